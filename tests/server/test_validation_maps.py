"""The edge checks walk map fields (ReportTrialRequest.metrics) by key and value."""

from __future__ import annotations

import pytest

from morphnas.core.errors import InvalidArgumentError
from morphnas.server.validation import check_request
from morphnas.v1 import morphnas_pb2 as pb


def test_a_report_with_named_metrics_passes_the_edge_checks() -> None:
    check_request(pb.ReportTrialRequest(trial_id="t", metrics={"latency_ms": 0.4, "params": 9.0}))


def test_a_metric_name_with_a_nul_character_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="metrics keys"):
        check_request(pb.ReportTrialRequest(trial_id="t", metrics={"latency\x00": 1.0}))
