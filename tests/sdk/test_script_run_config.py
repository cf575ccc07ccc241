"""ScriptRunConfig, RunConfiguration and Environment: construction, validation, the job definition
they give (RUN_API.md §13). No server needed."""

from __future__ import annotations

import logging
import sys

import pytest

from runwire import ComputeTarget, Environment, RunConfiguration, ScriptRunConfig
from runwire.environment import CondaDependencies
from runwire.exceptions import ExperimentExecutionException, UserErrorException
from runwire.jobs import DEFAULT_TARGET
from runwire.limits import MAX_JOB_ARGUMENTS
from runwire.script_run import job_definition


@pytest.fixture
def src(tmp_path):
    folder = tmp_path / "src"
    (folder / "sub").mkdir(parents=True)
    (folder / "train.py").write_text("print('hi')\n")
    (folder / "sub" / "job.py").write_text("print('sub')\n")
    (tmp_path / "outside.py").write_text("print('outside')\n")
    return folder


def test_environment_defaults_and_name_type():
    env = Environment("user-managed-env")
    assert env.name == "user-managed-env"
    assert env.python.user_managed_dependencies is False
    assert env.python.interpreter_path == "python"
    assert env.python.conda_dependencies is None
    assert env.docker.enabled is False and env.docker.base_image is None
    assert env.environment_variables == {}
    with pytest.raises(TypeError):
        Environment(3)
    with pytest.raises(TypeError):
        Environment(None)


def test_script_run_config_defaults(src):
    config = ScriptRunConfig(source_directory=str(src), script="train.py", arguments=["--alpha", 0.5])
    assert config.source_directory == str(src)
    assert config.script == "train.py"
    assert config.arguments == ["--alpha", 0.5]
    assert config.command is None
    assert isinstance(config.run_config, RunConfiguration)
    assert config.run_config.target == DEFAULT_TARGET == "local"
    assert isinstance(config.run_config.environment, Environment)
    assert config.run_config.max_run_duration_seconds == 2592000


def test_positional_signature_matches_azure(src):
    env = Environment("e")
    config = ScriptRunConfig(str(src), "train.py", ["a"], None, None, "gpu", env, None, None, 60, None, None)
    assert config.run_config.target == "gpu"
    assert config.run_config.environment is env
    assert config.run_config.max_run_duration_seconds == 60


def test_compute_target_by_name_or_object(src, tmp_path):
    class Target:
        name = "pool"

    assert ScriptRunConfig(str(src), "train.py", compute_target=Target()).run_config.target == "pool"
    assert ScriptRunConfig(str(src), "train.py", compute_target="cpu").target == "cpu"
    target = ComputeTarget.__new__(ComputeTarget)
    target.name = "cluster"
    assert ScriptRunConfig(str(src), "train.py", compute_target=target).target == "cluster"
    with pytest.raises(UserErrorException):
        ScriptRunConfig(str(src), "train.py", compute_target=42)


def test_run_config_target_and_environment_are_mutable(src):
    """The 2020 notebook sets `src.run_config.environment = env` after construction."""
    config = ScriptRunConfig(source_directory=str(src), script="train.py")
    env = Environment("user-managed-env")
    env.python.user_managed_dependencies = True
    env.python.interpreter_path = sys.executable
    config.run_config.environment = env
    config.run_config.target = "pool"
    definition = job_definition(config)
    assert definition.environment_name == "user-managed-env"
    assert definition.user_managed_dependencies is True
    assert definition.interpreter_path == sys.executable
    assert config.target == "pool"


def test_run_config_given_ignores_the_others_with_a_warning(src, caplog):
    rc = RunConfiguration()
    rc.target = "from-rc"
    with caplog.at_level(logging.WARNING, logger="runwire.sdk"):
        config = ScriptRunConfig(
            str(src), "train.py", run_config=rc, compute_target="ignored", environment=Environment("x")
        )
    assert config.run_config is rc
    assert config.run_config.target == "from-rc"
    assert config.run_config.environment.name != "x"
    assert "will be ignored" in caplog.text


def test_script_must_exist_inside_the_source_directory(src):
    with pytest.raises(ExperimentExecutionException, match="script path doesn't exist"):
        ScriptRunConfig(str(src), "missing.py")
    with pytest.raises(ExperimentExecutionException, match="script path doesn't exist"):
        ScriptRunConfig(str(src), "../outside.py")
    with pytest.raises(ExperimentExecutionException, match="script path doesn't exist"):
        ScriptRunConfig(str(src), str(src.parent / "outside.py"))
    with pytest.raises(ExperimentExecutionException, match="script path doesn't exist"):
        ScriptRunConfig(str(src), "sub")  # a folder, not a file
    with pytest.raises(ExperimentExecutionException, match="script path doesn't exist"):
        ScriptRunConfig(str(src / "nope"), "train.py")
    # a script in a subfolder, or given by its absolute path inside the folder, is fine
    assert job_definition(ScriptRunConfig(str(src), "sub/job.py")).script == "sub/job.py"
    assert job_definition(ScriptRunConfig(str(src), str(src / "sub" / "job.py"))).script == "sub/job.py"


def test_a_script_removed_after_construction_is_caught_at_submission(src):
    config = ScriptRunConfig(str(src), "train.py")
    (src / "train.py").unlink()
    with pytest.raises(ExperimentExecutionException, match="script path doesn't exist"):
        job_definition(config)


def test_command_and_script_are_mutually_exclusive(src):
    with pytest.raises(UserErrorException, match="command"):
        ScriptRunConfig(str(src), "train.py", command=["python", "train.py"])
    with pytest.raises(UserErrorException, match="command"):
        ScriptRunConfig(str(src), arguments=["a"], command="python train.py")
    config = ScriptRunConfig(str(src), command="python train.py --x 'a b'")
    assert list(job_definition(config).command) == ["python", "train.py", "--x", "a b"]
    assert job_definition(config).script == ""
    assert list(job_definition(ScriptRunConfig(str(src), command=["python", "train.py", 3])).command) == [
        "python",
        "train.py",
        "3",
    ]
    with pytest.raises(UserErrorException, match="needs a script"):
        job_definition(ScriptRunConfig(str(src)))


def test_arguments_are_strings_in_the_definition_and_limited(src):
    config = ScriptRunConfig(str(src), "train.py", arguments=["--alpha", 0.5, "--n", 3, True, None])
    assert list(job_definition(config).arguments) == ["--alpha", "0.5", "--n", "3", "True", "None"]
    with pytest.raises(UserErrorException, match="list"):
        ScriptRunConfig(str(src), "train.py", arguments="--alpha 0.5")
    with pytest.raises(UserErrorException, match=str(MAX_JOB_ARGUMENTS)):
        ScriptRunConfig(str(src), "train.py", arguments=["x"] * (MAX_JOB_ARGUMENTS + 1))


def test_definition_interpreter_only_when_user_managed(src):
    env = Environment("managed")
    env.python.interpreter_path = "/opt/python"
    env.environment_variables = {"A": 1}
    definition = job_definition(ScriptRunConfig(str(src), "train.py", environment=env, max_run_duration_seconds=90))
    assert definition.user_managed_dependencies is False
    assert definition.interpreter_path == ""  # the agent's own interpreter
    assert dict(definition.environment_variables) == {"A": "1"}
    assert definition.max_run_duration_seconds == 90
    assert definition.source_directory == str(src)
    env.python.user_managed_dependencies = True
    assert job_definition(ScriptRunConfig(str(src), "train.py", environment=env)).interpreter_path == "/opt/python"


def test_docker_environments_are_refused(src):
    env = Environment("docker-env")
    env.docker.enabled = True
    env.docker.base_image = "mcr.microsoft.com/azureml/base:latest"
    with pytest.raises(UserErrorException, match="docker"):
        job_definition(ScriptRunConfig(str(src), "train.py", environment=env))


def test_environment_from_requirements_and_conda_file(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("numpy==2.0  # arrays\n\nscikit-learn\n")
    env = Environment.from_pip_requirements("pip-env", str(req))
    assert env.python.conda_dependencies.pip_packages == ["numpy==2.0", "scikit-learn"]
    conda = tmp_path / "env.yml"
    conda.write_text(
        "name: project_environment\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.11\n  - numpy\n"
        "  - pip:\n    - azureml-defaults\n    - scikit-learn==1.5\n"
    )
    env = Environment.from_conda_specification("conda-env", str(conda))
    deps = env.python.conda_dependencies
    assert deps.python_version == "3.11"
    assert deps.conda_packages == ["numpy"]
    assert deps.pip_packages == ["azureml-defaults", "scikit-learn==1.5"]
    assert deps.channels == ["conda-forge"]
    assert "- pip:" in CondaDependencies.create(pip_packages=["x"]).serialize_to_string()


def test_environment_register_and_get(tmp_path):
    class Ws:
        name = "my ws"

    env = Environment("user-managed-env")
    env.python.user_managed_dependencies = True
    env.python.interpreter_path = "/usr/bin/python3"
    env.environment_variables = {"K": "V"}
    assert env.register(Ws()).version == "1"
    assert env.register(Ws()).version == "2"
    got = Environment.get(Ws(), "user-managed-env")
    assert got.version == "2"
    assert got.python.user_managed_dependencies is True
    assert got.python.interpreter_path == "/usr/bin/python3"
    assert got.environment_variables == {"K": "V"}
    assert Environment.get(Ws(), "user-managed-env", version="1").version == "1"
    assert list(Environment.list(Ws())) == ["user-managed-env"]
    with pytest.raises(UserErrorException):
        Environment.get(Ws(), "nope")
