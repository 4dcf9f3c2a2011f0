"""The morphnas Python SDK (grpc + protobuf + numpy; torch only for ``build_model``).

Importing it first asks gRPC for its lower-latency I/O path, if gRPC is not loaded yet and
``GRPC_EXPERIMENTS`` is unset (see :mod:`morphnas.grpc_io`).
"""

from morphnas.grpc_io import prefer_low_latency_io

prefer_low_latency_io()  # before the imports below load grpc

from morphnas.client.client import Client, SearchHandle, TrialHandle, to_numpy_weights
from morphnas.client.errors import ServerError
from morphnas.client.records import (
    DatasetInfo,
    SearchEvent,
    SearchInfo,
    TrainingBudgetInfo,
    TrainingRunInfo,
    TrialInfo,
)
from morphnas.core.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    InvalidGraphError,
    MorphnasError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    WeightsError,
)

__all__ = [
    "AlreadyExistsError",
    "Client",
    "DatasetInfo",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "InvalidGraphError",
    "MorphnasError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "SearchEvent",
    "SearchHandle",
    "SearchInfo",
    "ServerError",
    "TrainingBudgetInfo",
    "TrainingRunInfo",
    "TrialHandle",
    "TrialInfo",
    "UnauthenticatedError",
    "UnavailableError",
    "WeightsError",
    "to_numpy_weights",
]
