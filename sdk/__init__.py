"""runwire: a self-hosted experiment tracker with Azure ML v1's tracking API.

from runwire import Workspace, Experiment, Run, ScriptRunConfig, Environment
"""

from runwire.compute import ComputeTarget
from runwire.environment import Environment
from runwire.exceptions import (
    ActivityFailedException,
    AzureMLException,
    ExperimentExecutionException,
    RunEnvironmentException,
    SnapshotException,
    UserErrorException,
)
from runwire.experiment import Experiment
from runwire.run import Run, get_run
from runwire.script_run import ScriptRun
from runwire.script_run_config import RunConfiguration, ScriptRunConfig
from runwire.series import MetricSeries
from runwire.workspace import Workspace

__version__ = "0.1.0"

__all__ = [
    "ActivityFailedException",
    "AzureMLException",
    "ComputeTarget",
    "Environment",
    "Experiment",
    "ExperimentExecutionException",
    "MetricSeries",
    "Run",
    "RunConfiguration",
    "RunEnvironmentException",
    "ScriptRun",
    "ScriptRunConfig",
    "SnapshotException",
    "UserErrorException",
    "Workspace",
    "__version__",
    "get_run",
]
