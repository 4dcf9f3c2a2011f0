"""The morphnas Python SDK (grpc + protobuf + numpy; torch only for ``build_model``).

Importing it changes nothing in the host program: no environment variable, no global gRPC
setting. A program that wants the lower-latency gRPC I/O path the ``morphnas`` command takes
asks for it itself, before anything loads grpc (see :mod:`morphnas.grpc_io`).
"""

from morphnas.client.client import Client, SearchHandle, TrialHandle, to_numpy_weights
from morphnas.client.errors import ServerError
from morphnas.client.records import (
    DatasetInfo,
    FinalFitInfo,
    ParetoFront,
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
    "FinalFitInfo",
    "InvalidArgumentError",
    "InvalidGraphError",
    "MorphnasError",
    "NotFoundError",
    "ParetoFront",
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
