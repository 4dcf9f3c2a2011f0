from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Policy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLICY_UNSPECIFIED: _ClassVar[Policy]
    POLICY_BAYESIAN: _ClassVar[Policy]
    POLICY_RANDOM: _ClassVar[Policy]

class TrialState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRIAL_STATE_UNSPECIFIED: _ClassVar[TrialState]
    ACTIVE: _ClassVar[TrialState]
    COMPLETED: _ClassVar[TrialState]
    FAILED: _ClassVar[TrialState]
    INFEASIBLE: _ClassVar[TrialState]
    STALE: _ClassVar[TrialState]

class WeightsKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEIGHTS_KIND_UNSPECIFIED: _ClassVar[WeightsKind]
    INITIAL: _ClassVar[WeightsKind]
    TRAINED: _ClassVar[WeightsKind]
    FINAL: _ClassVar[WeightsKind]

class RunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATE_UNSPECIFIED: _ClassVar[RunState]
    RUNNING: _ClassVar[RunState]
    STOPPED: _ClassVar[RunState]
    DONE: _ClassVar[RunState]
POLICY_UNSPECIFIED: Policy
POLICY_BAYESIAN: Policy
POLICY_RANDOM: Policy
TRIAL_STATE_UNSPECIFIED: TrialState
ACTIVE: TrialState
COMPLETED: TrialState
FAILED: TrialState
INFEASIBLE: TrialState
STALE: TrialState
WEIGHTS_KIND_UNSPECIFIED: WeightsKind
INITIAL: WeightsKind
TRAINED: WeightsKind
FINAL: WeightsKind
RUN_STATE_UNSPECIFIED: RunState
RUNNING: RunState
STOPPED: RunState
DONE: RunState

class Search(_message.Message):
    __slots__ = ("id", "name", "input_shape", "num_classes", "seed", "policy", "beta", "seed_width", "seed_depth", "max_params", "max_memory_bytes", "batch_size", "lease_seconds", "max_trials", "created_at", "size_cap_params", "trial_count", "stopped", "best_trial_id", "best_score", "objectives", "max_latency_ms", "latency_batch_size")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    SEED_WIDTH_FIELD_NUMBER: _ClassVar[int]
    SEED_DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAX_PARAMS_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_TRIALS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SIZE_CAP_PARAMS_FIELD_NUMBER: _ClassVar[int]
    TRIAL_COUNT_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    BEST_TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    BEST_SCORE_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVES_FIELD_NUMBER: _ClassVar[int]
    MAX_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    num_classes: int
    seed: int
    policy: Policy
    beta: float
    seed_width: int
    seed_depth: int
    max_params: int
    max_memory_bytes: int
    batch_size: int
    lease_seconds: float
    max_trials: int
    created_at: float
    size_cap_params: int
    trial_count: int
    stopped: bool
    best_trial_id: str
    best_score: float
    objectives: _containers.RepeatedScalarFieldContainer[str]
    max_latency_ms: float
    latency_batch_size: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., input_shape: _Optional[_Iterable[int]] = ..., num_classes: _Optional[int] = ..., seed: _Optional[int] = ..., policy: _Optional[_Union[Policy, str]] = ..., beta: _Optional[float] = ..., seed_width: _Optional[int] = ..., seed_depth: _Optional[int] = ..., max_params: _Optional[int] = ..., max_memory_bytes: _Optional[int] = ..., batch_size: _Optional[int] = ..., lease_seconds: _Optional[float] = ..., max_trials: _Optional[int] = ..., created_at: _Optional[float] = ..., size_cap_params: _Optional[int] = ..., trial_count: _Optional[int] = ..., stopped: _Optional[bool] = ..., best_trial_id: _Optional[str] = ..., best_score: _Optional[float] = ..., objectives: _Optional[_Iterable[str]] = ..., max_latency_ms: _Optional[float] = ..., latency_batch_size: _Optional[int] = ...) -> None: ...

class CreateSearchRequest(_message.Message):
    __slots__ = ("name", "input_shape", "num_classes", "seed", "policy", "beta", "seed_width", "seed_depth", "max_params", "max_memory_bytes", "batch_size", "lease_seconds", "max_trials", "objectives", "max_latency_ms", "latency_batch_size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    SEED_WIDTH_FIELD_NUMBER: _ClassVar[int]
    SEED_DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAX_PARAMS_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_TRIALS_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVES_FIELD_NUMBER: _ClassVar[int]
    MAX_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    num_classes: int
    seed: int
    policy: Policy
    beta: float
    seed_width: int
    seed_depth: int
    max_params: int
    max_memory_bytes: int
    batch_size: int
    lease_seconds: float
    max_trials: int
    objectives: _containers.RepeatedScalarFieldContainer[str]
    max_latency_ms: float
    latency_batch_size: int
    def __init__(self, name: _Optional[str] = ..., input_shape: _Optional[_Iterable[int]] = ..., num_classes: _Optional[int] = ..., seed: _Optional[int] = ..., policy: _Optional[_Union[Policy, str]] = ..., beta: _Optional[float] = ..., seed_width: _Optional[int] = ..., seed_depth: _Optional[int] = ..., max_params: _Optional[int] = ..., max_memory_bytes: _Optional[int] = ..., batch_size: _Optional[int] = ..., lease_seconds: _Optional[float] = ..., max_trials: _Optional[int] = ..., objectives: _Optional[_Iterable[str]] = ..., max_latency_ms: _Optional[float] = ..., latency_batch_size: _Optional[int] = ...) -> None: ...

class GetSearchRequest(_message.Message):
    __slots__ = ("search_id",)
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    def __init__(self, search_id: _Optional[str] = ...) -> None: ...

class ListSearchesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSearchesResponse(_message.Message):
    __slots__ = ("searches", "next_page_token")
    SEARCHES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    searches: _containers.RepeatedCompositeFieldContainer[Search]
    next_page_token: str
    def __init__(self, searches: _Optional[_Iterable[_Union[Search, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteSearchRequest(_message.Message):
    __slots__ = ("search_id",)
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    def __init__(self, search_id: _Optional[str] = ...) -> None: ...

class DeleteSearchResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Trial(_message.Message):
    __slots__ = ("id", "search_id", "number", "state", "architecture_json", "architecture_hash", "parent_id", "operations_json", "score", "reason", "worker_id", "lease_expires_at", "created_at", "updated_at", "has_trained_weights", "trained_weights_sha256", "num_params", "metrics", "measured_on")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_JSON_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_HASH_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    HAS_TRAINED_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    TRAINED_WEIGHTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    NUM_PARAMS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    MEASURED_ON_FIELD_NUMBER: _ClassVar[int]
    id: str
    search_id: str
    number: int
    state: TrialState
    architecture_json: str
    architecture_hash: str
    parent_id: str
    operations_json: str
    score: float
    reason: str
    worker_id: str
    lease_expires_at: float
    created_at: float
    updated_at: float
    has_trained_weights: bool
    trained_weights_sha256: str
    num_params: int
    metrics: _containers.ScalarMap[str, float]
    measured_on: str
    def __init__(self, id: _Optional[str] = ..., search_id: _Optional[str] = ..., number: _Optional[int] = ..., state: _Optional[_Union[TrialState, str]] = ..., architecture_json: _Optional[str] = ..., architecture_hash: _Optional[str] = ..., parent_id: _Optional[str] = ..., operations_json: _Optional[str] = ..., score: _Optional[float] = ..., reason: _Optional[str] = ..., worker_id: _Optional[str] = ..., lease_expires_at: _Optional[float] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ..., has_trained_weights: _Optional[bool] = ..., trained_weights_sha256: _Optional[str] = ..., num_params: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., measured_on: _Optional[str] = ...) -> None: ...

class GetParetoFrontRequest(_message.Message):
    __slots__ = ("search_id", "objectives", "max_latency_ms", "max_params")
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVES_FIELD_NUMBER: _ClassVar[int]
    MAX_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_PARAMS_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    objectives: _containers.RepeatedScalarFieldContainer[str]
    max_latency_ms: float
    max_params: int
    def __init__(self, search_id: _Optional[str] = ..., objectives: _Optional[_Iterable[str]] = ..., max_latency_ms: _Optional[float] = ..., max_params: _Optional[int] = ...) -> None: ...

class GetParetoFrontResponse(_message.Message):
    __slots__ = ("objectives", "trials")
    OBJECTIVES_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    objectives: _containers.RepeatedScalarFieldContainer[str]
    trials: _containers.RepeatedCompositeFieldContainer[Trial]
    def __init__(self, objectives: _Optional[_Iterable[str]] = ..., trials: _Optional[_Iterable[_Union[Trial, _Mapping]]] = ...) -> None: ...

class SuggestTrialsRequest(_message.Message):
    __slots__ = ("search_id", "count", "worker_id")
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    count: int
    worker_id: str
    def __init__(self, search_id: _Optional[str] = ..., count: _Optional[int] = ..., worker_id: _Optional[str] = ...) -> None: ...

class SuggestTrialsResponse(_message.Message):
    __slots__ = ("trials",)
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    trials: _containers.RepeatedCompositeFieldContainer[Trial]
    def __init__(self, trials: _Optional[_Iterable[_Union[Trial, _Mapping]]] = ...) -> None: ...

class ReportTrialRequest(_message.Message):
    __slots__ = ("trial_id", "state", "score", "reason", "weights", "weights_sha256", "worker_id", "metrics", "measured_on")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    MEASURED_ON_FIELD_NUMBER: _ClassVar[int]
    trial_id: str
    state: TrialState
    score: float
    reason: str
    weights: bytes
    weights_sha256: str
    worker_id: str
    metrics: _containers.ScalarMap[str, float]
    measured_on: str
    def __init__(self, trial_id: _Optional[str] = ..., state: _Optional[_Union[TrialState, str]] = ..., score: _Optional[float] = ..., reason: _Optional[str] = ..., weights: _Optional[bytes] = ..., weights_sha256: _Optional[str] = ..., worker_id: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., measured_on: _Optional[str] = ...) -> None: ...

class ReportProgressRequest(_message.Message):
    __slots__ = ("trial_id", "step", "value", "name")
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    trial_id: str
    step: int
    value: float
    name: str
    def __init__(self, trial_id: _Optional[str] = ..., step: _Optional[int] = ..., value: _Optional[float] = ..., name: _Optional[str] = ...) -> None: ...

class ReportProgressResponse(_message.Message):
    __slots__ = ("should_stop", "trial")
    SHOULD_STOP_FIELD_NUMBER: _ClassVar[int]
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    should_stop: bool
    trial: Trial
    def __init__(self, should_stop: _Optional[bool] = ..., trial: _Optional[_Union[Trial, _Mapping]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("trial_id",)
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    trial_id: str
    def __init__(self, trial_id: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("trial",)
    TRIAL_FIELD_NUMBER: _ClassVar[int]
    trial: Trial
    def __init__(self, trial: _Optional[_Union[Trial, _Mapping]] = ...) -> None: ...

class GetTrialRequest(_message.Message):
    __slots__ = ("trial_id",)
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    trial_id: str
    def __init__(self, trial_id: _Optional[str] = ...) -> None: ...

class ListTrialsRequest(_message.Message):
    __slots__ = ("search_id", "states", "newer_than", "page_size", "page_token")
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    NEWER_THAN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    states: _containers.RepeatedScalarFieldContainer[TrialState]
    newer_than: int
    page_size: int
    page_token: str
    def __init__(self, search_id: _Optional[str] = ..., states: _Optional[_Iterable[_Union[TrialState, str]]] = ..., newer_than: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTrialsResponse(_message.Message):
    __slots__ = ("trials", "next_page_token")
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    trials: _containers.RepeatedCompositeFieldContainer[Trial]
    next_page_token: str
    def __init__(self, trials: _Optional[_Iterable[_Union[Trial, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UploadWeightsRequest(_message.Message):
    __slots__ = ("trial_id", "total_size", "sha256", "data")
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    trial_id: str
    total_size: int
    sha256: str
    data: bytes
    def __init__(self, trial_id: _Optional[str] = ..., total_size: _Optional[int] = ..., sha256: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadWeightsResponse(_message.Message):
    __slots__ = ("sha256", "size")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size: int
    def __init__(self, sha256: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class DownloadWeightsRequest(_message.Message):
    __slots__ = ("trial_id", "kind")
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    trial_id: str
    kind: WeightsKind
    def __init__(self, trial_id: _Optional[str] = ..., kind: _Optional[_Union[WeightsKind, str]] = ...) -> None: ...

class WeightsChunk(_message.Message):
    __slots__ = ("total_size", "sha256", "data")
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    total_size: int
    sha256: str
    data: bytes
    def __init__(self, total_size: _Optional[int] = ..., sha256: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class TrainingBudget(_message.Message):
    __slots__ = ("epochs", "max_seconds", "batch_size", "optimizer", "learning_rate", "patience", "device")
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    MAX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    PATIENCE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    epochs: int
    max_seconds: float
    batch_size: int
    optimizer: str
    learning_rate: float
    patience: int
    device: str
    def __init__(self, epochs: _Optional[int] = ..., max_seconds: _Optional[float] = ..., batch_size: _Optional[int] = ..., optimizer: _Optional[str] = ..., learning_rate: _Optional[float] = ..., patience: _Optional[int] = ..., device: _Optional[str] = ...) -> None: ...

class StartTrainingRequest(_message.Message):
    __slots__ = ("search_id", "dataset", "trials", "budget", "budget_seconds", "final_fit", "resume")
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    BUDGET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIT_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    dataset: str
    trials: int
    budget: TrainingBudget
    budget_seconds: float
    final_fit: str
    resume: bool
    def __init__(self, search_id: _Optional[str] = ..., dataset: _Optional[str] = ..., trials: _Optional[int] = ..., budget: _Optional[_Union[TrainingBudget, _Mapping]] = ..., budget_seconds: _Optional[float] = ..., final_fit: _Optional[str] = ..., resume: _Optional[bool] = ...) -> None: ...

class TrainingRun(_message.Message):
    __slots__ = ("id", "search_id", "dataset", "trials", "claimed", "budget", "state", "first_number", "created_at", "finished_at", "best_trial_id", "test_accuracy", "budget_seconds", "spent_seconds", "final_fit", "final_test_accuracy", "reserved_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TRIALS_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FIRST_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    BEST_TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    TEST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    BUDGET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SPENT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIT_FIELD_NUMBER: _ClassVar[int]
    FINAL_TEST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    RESERVED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    search_id: str
    dataset: str
    trials: int
    claimed: int
    budget: TrainingBudget
    state: RunState
    first_number: int
    created_at: float
    finished_at: float
    best_trial_id: str
    test_accuracy: float
    budget_seconds: float
    spent_seconds: float
    final_fit: str
    final_test_accuracy: float
    reserved_seconds: float
    def __init__(self, id: _Optional[str] = ..., search_id: _Optional[str] = ..., dataset: _Optional[str] = ..., trials: _Optional[int] = ..., claimed: _Optional[int] = ..., budget: _Optional[_Union[TrainingBudget, _Mapping]] = ..., state: _Optional[_Union[RunState, str]] = ..., first_number: _Optional[int] = ..., created_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., best_trial_id: _Optional[str] = ..., test_accuracy: _Optional[float] = ..., budget_seconds: _Optional[float] = ..., spent_seconds: _Optional[float] = ..., final_fit: _Optional[str] = ..., final_test_accuracy: _Optional[float] = ..., reserved_seconds: _Optional[float] = ...) -> None: ...

class GetTrainingRunRequest(_message.Message):
    __slots__ = ("search_id",)
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    def __init__(self, search_id: _Optional[str] = ...) -> None: ...

class StopSearchRequest(_message.Message):
    __slots__ = ("search_id",)
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    def __init__(self, search_id: _Optional[str] = ...) -> None: ...

class WatchSearchRequest(_message.Message):
    __slots__ = ("search_id", "after_event_id")
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    after_event_id: int
    def __init__(self, search_id: _Optional[str] = ..., after_event_id: _Optional[int] = ...) -> None: ...

class SearchEvent(_message.Message):
    __slots__ = ("id", "search_id", "kind", "payload_json", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: int
    search_id: str
    kind: str
    payload_json: str
    created_at: float
    def __init__(self, id: _Optional[int] = ..., search_id: _Optional[str] = ..., kind: _Optional[str] = ..., payload_json: _Optional[str] = ..., created_at: _Optional[float] = ...) -> None: ...

class ExportModelRequest(_message.Message):
    __slots__ = ("search_id", "trial_id", "softmax", "trained_weights", "max_latency_ms", "max_params")
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    TRIAL_ID_FIELD_NUMBER: _ClassVar[int]
    SOFTMAX_FIELD_NUMBER: _ClassVar[int]
    TRAINED_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    MAX_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_PARAMS_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    trial_id: str
    softmax: bool
    trained_weights: bool
    max_latency_ms: float
    max_params: int
    def __init__(self, search_id: _Optional[str] = ..., trial_id: _Optional[str] = ..., softmax: _Optional[bool] = ..., trained_weights: _Optional[bool] = ..., max_latency_ms: _Optional[float] = ..., max_params: _Optional[int] = ...) -> None: ...

class ExportChunk(_message.Message):
    __slots__ = ("total_size", "sha256", "data")
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    total_size: int
    sha256: str
    data: bytes
    def __init__(self, total_size: _Optional[int] = ..., sha256: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class Dataset(_message.Message):
    __slots__ = ("id", "name", "input_shape", "num_classes", "num_examples", "sha256", "size_bytes", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    NUM_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    num_classes: int
    num_examples: int
    sha256: str
    size_bytes: int
    created_at: float
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., input_shape: _Optional[_Iterable[int]] = ..., num_classes: _Optional[int] = ..., num_examples: _Optional[int] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., created_at: _Optional[float] = ...) -> None: ...

class UploadDatasetRequest(_message.Message):
    __slots__ = ("name", "total_size", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    total_size: int
    data: bytes
    def __init__(self, name: _Optional[str] = ..., total_size: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[Dataset]
    def __init__(self, datasets: _Optional[_Iterable[_Union[Dataset, _Mapping]]] = ...) -> None: ...

class DeleteDatasetRequest(_message.Message):
    __slots__ = ("dataset_id",)
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    def __init__(self, dataset_id: _Optional[str] = ...) -> None: ...

class DeleteDatasetResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
