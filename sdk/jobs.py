"""What the SDK, the agent's job runner and the collector agree on about submitted script runs
(issue 4): the run type, the log file, the environment a job's process gets."""

from __future__ import annotations

SCRIPT_RUN_TYPE = "azureml.scriptrun"
"""`run.type` of runs made by `experiment.submit(ScriptRunConfig(...))`."""

STD_LOG_PATH = "user_logs/std_log.txt"
"""The log file that holds a job's stdout and stderr, line by line, as it runs."""

OUTPUTS_DIR = "outputs"
"""The folder (inside a job's working folder) uploaded as the run's `outputs/...` files after exit."""

DEFAULT_TARGET = "local"
"""The compute target of `runwire up`'s agent and of a ScriptRunConfig without one."""

# Environment variables the job runner sets for a job's process (read by Run.get_context()).
ENV_RUN_ID = "RUNWIRE_RUN_ID"
ENV_EXPERIMENT = "RUNWIRE_EXPERIMENT"
ENV_COLLECTOR = "RUNWIRE_COLLECTOR"
ENV_AGENT_SOCKET = "RUNWIRE_AGENT_SOCKET"
ENV_TOKEN = "RUNWIRE_TOKEN"
ENV_OUTPUT_DIRECTORY = "RUNWIRE_OUTPUT_DIRECTORY"
ENV_TARGET = "RUNWIRE_COMPUTE_TARGET"
ENV_STUDIO = "RUNWIRE_STUDIO"
# Azure ML's names, set too so scripts that read them keep working.
AZUREML_ENV_RUN_ID = "AZUREML_RUN_ID"
AZUREML_ENV_EXPERIMENT = "AZUREML_ARM_PROJECT_NAME"
AZUREML_ENV_OUTPUT_DIRECTORY = "AZUREML_OUTPUT_DIRECTORY"
