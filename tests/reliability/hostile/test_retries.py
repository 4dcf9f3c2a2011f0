"""Every ask/tell call can be retried after a lost reply, and a late report counts once.

ReportTrial naming uploaded weights by ``weights_sha256`` used up the upload, so the identical
retry failed with FAILED_PRECONDITION "no weights ... were uploaded"; it is a no-op now. A late
report of a STALE trial (its lease ran out and its architecture was handed out again) is kept,
and the copy handed out in its place is closed: a proposal has one result, the first to arrive.
"""

from __future__ import annotations

import hashlib
import time

import grpc
import pytest

from morphnas.v1 import morphnas_pb2 as pb
from tests.reliability.hostile.world import World


def test_a_report_naming_uploaded_weights_can_be_retried(world: World) -> None:
    stub = world.client.stub
    trial_id = world.active_trial()
    blob = world.initial_weights(trial_id)
    upload = pb.UploadWeightsRequest(trial_id=trial_id, total_size=len(blob), data=blob)
    digest = stub.UploadWeights(iter([upload]), timeout=60).sha256
    assert digest == hashlib.sha256(blob).hexdigest()
    report = pb.ReportTrialRequest(
        trial_id=trial_id, state=pb.COMPLETED, score=0.25, weights_sha256=digest
    )
    first = stub.ReportTrial(report, timeout=60)
    again = stub.ReportTrial(report, timeout=60)  # the retry after a lost reply
    assert first == again and first.trained_weights_sha256 == digest
    other = pb.ReportTrialRequest(
        trial_id=trial_id, state=pb.COMPLETED, score=0.5, weights_sha256=digest
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.ReportTrial(other, timeout=60)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_a_report_naming_weights_never_uploaded_is_still_refused(world: World) -> None:
    report = pb.ReportTrialRequest(
        trial_id=world.active_trial(), state=pb.COMPLETED, score=0.5, weights_sha256="a" * 64
    )
    with pytest.raises(grpc.RpcError) as caught:
        world.client.stub.ReportTrial(report, timeout=60)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "UploadWeights" in caught.value.details()


def test_a_late_report_is_kept_once_and_its_copy_closed(world: World) -> None:
    stub = world.client.stub
    create = pb.CreateSearchRequest(
        name="late", input_shape=[8], num_classes=3, policy=pb.POLICY_RANDOM, lease_seconds=1.0
    )
    search_id = stub.CreateSearch(create, timeout=60).id

    def ask(worker: str) -> pb.Trial:
        request = pb.SuggestTrialsRequest(search_id=search_id, count=1, worker_id=worker)
        [trial] = stub.SuggestTrials(request, timeout=60).trials
        return trial

    late = ask("slow")
    time.sleep(1.2)  # its lease runs out: the next ask hands its architecture out again
    copy = ask("fast")
    assert copy.id != late.id and copy.architecture_json == late.architecture_json
    report = pb.ReportTrialRequest(
        trial_id=late.id, state=pb.COMPLETED, score=0.75, worker_id="slow"
    )
    kept = stub.ReportTrial(report, timeout=60)
    assert kept.state == pb.COMPLETED and kept.score == 0.75
    assert stub.ReportTrial(report, timeout=60) == kept  # a retry is a no-op
    closed = stub.GetTrial(pb.GetTrialRequest(trial_id=copy.id), timeout=60)
    assert closed.state == pb.FAILED and closed.reason.startswith("superseded")
    progress = pb.ReportProgressRequest(trial_id=copy.id, step=0, value=0.5)
    assert stub.ReportProgress(progress, timeout=60).should_stop
    with pytest.raises(grpc.RpcError) as caught:
        stub.ReportTrial(
            pb.ReportTrialRequest(trial_id=copy.id, state=pb.COMPLETED, score=0.5), timeout=60
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    listed = stub.ListTrials(pb.ListTrialsRequest(search_id=search_id), timeout=60).trials
    assert [t.score for t in listed if t.state == pb.COMPLETED] == [0.75]
