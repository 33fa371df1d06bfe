"""The MOFSim Python SDK: submit MOF simulations to a MOFSim server and collect results.

    from mofsim_client import MOFSimClient

    client = MOFSimClient(base_url="http://server:8000", api_key="your-api-key")
    task = client.submit_optimization(structure="path/to/mof.cif", model="mace_prod",
                                      priority="NORMAL")
    result = task.wait()

``AsyncMOFSimClient`` is the asyncio twin.  Importing this package needs only httpx: ASE
is imported only when an ``Atoms`` object is passed as a structure.
"""

from mofsim_client._bench import benchmark_files
from mofsim_client._http import DEFAULT_SERVER, VERSION, Settings
from mofsim_client.aclient import AsyncMOFSimClient
from mofsim_client.client import MOFSimClient
from mofsim_client.errors import (
    AuthenticationError,
    EndpointNotFoundError,
    InvalidStructureError,
    ModelNotFoundError,
    MOFSimError,
    NotFoundError,
    OutputFileNotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    QueueFullError,
    RateLimitError,
    ResourceUnavailableError,
    ResultNotReadyError,
    ServerError,
    ServerUnavailableError,
    StructureNotFoundError,
    TaskAlreadyFinishedError,
    TaskCancelledError,
    TaskDivergedError,
    TaskError,
    TaskFailedError,
    TaskNotFoundError,
    TaskTimeoutError,
    UnsupportedFormatError,
    ValidationError,
    WaitTimeoutError,
)
from mofsim_client.models import (
    CancelResult,
    LogEntry,
    ModelInfo,
    StructureInfo,
    SystemStatus,
    TaskEvent,
    TaskInfo,
)
from mofsim_client.results import (
    BulkModulusResult,
    CellParameters,
    HeatCapacityResult,
    InteractionEnergyResult,
    OptimizationResult,
    SinglePointResult,
    StabilityResult,
    TaskResult,
)
from mofsim_client.server_models import (
    Alert,
    AlertList,
    Devices,
    LogPage,
    ModelRequest,
    ModelStatus,
    RetentionPlan,
)
from mofsim_client.task import AsyncTask, LogStream, Task

__version__ = VERSION

__all__ = [
    "DEFAULT_SERVER",
    "Alert",
    "AlertList",
    "AsyncMOFSimClient",
    "AsyncTask",
    "AuthenticationError",
    "BulkModulusResult",
    "CancelResult",
    "CellParameters",
    "Devices",
    "EndpointNotFoundError",
    "HeatCapacityResult",
    "InteractionEnergyResult",
    "InvalidStructureError",
    "LogEntry",
    "LogPage",
    "LogStream",
    "MOFSimClient",
    "MOFSimError",
    "ModelInfo",
    "ModelNotFoundError",
    "ModelRequest",
    "ModelStatus",
    "NotFoundError",
    "OptimizationResult",
    "OutputFileNotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "QueueFullError",
    "RateLimitError",
    "ResourceUnavailableError",
    "ResultNotReadyError",
    "RetentionPlan",
    "ServerError",
    "ServerUnavailableError",
    "Settings",
    "SinglePointResult",
    "StabilityResult",
    "StructureInfo",
    "StructureNotFoundError",
    "SystemStatus",
    "Task",
    "TaskAlreadyFinishedError",
    "TaskCancelledError",
    "TaskDivergedError",
    "TaskError",
    "TaskEvent",
    "TaskFailedError",
    "TaskInfo",
    "TaskNotFoundError",
    "TaskResult",
    "TaskTimeoutError",
    "UnsupportedFormatError",
    "ValidationError",
    "WaitTimeoutError",
    "benchmark_files",
    "__version__",
]
