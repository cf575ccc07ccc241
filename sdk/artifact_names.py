"""Artifact names: normalisation and the safety rules (shared by the SDK, the agent and the collector).

An artifact name is a relative, `/`-separated path inside its run (`outputs/model.pkl`). Leading
`./` and repeated or `.` components are normalised away (`./outputs//m.pkl` -> `outputs/m.pkl`);
names that could escape the run's folder or confuse a file system are refused with
`ArtifactNameError` (both `UserErrorException` and `ValueError`) naming the rule.
"""

from __future__ import annotations

from runwire.exceptions import UserErrorException
from runwire.limits import MAX_ARTIFACT_NAME_LENGTH


class ArtifactNameError(UserErrorException, ValueError):
    """An artifact name breaks a rule (absolute, `..`, control characters, too long, empty)."""


def normalize_name(name: object) -> str:
    """The normalised artifact name, or ArtifactNameError naming the broken rule."""
    if not isinstance(name, str):
        raise ArtifactNameError(f"an artifact name must be a str, not {type(name).__name__}")
    bad = next((c for c in name if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise ArtifactNameError(
            f"artifact name {name!r} contains the control character {bad!r}; NUL and control characters "
            "are not allowed in artifact names"
        )
    path = name.replace("\\", "/")
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        raise ArtifactNameError(f"artifact name {name!r} is an absolute path; artifact names are relative to their run")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArtifactNameError(
            f"artifact name {name!r} has a '..' component; artifact names may not leave their run's folder"
        )
    if not parts:
        raise ArtifactNameError(f"artifact name {name!r} is empty once normalised")
    if path.endswith("/"):
        raise ArtifactNameError(f"artifact name {name!r} ends with '/': it names a folder, not a file")
    out = "/".join(parts)
    if len(out) > MAX_ARTIFACT_NAME_LENGTH:
        raise ArtifactNameError(
            f"artifact name of {len(out)} characters is longer than MAX_ARTIFACT_NAME_LENGTH "
            f"({MAX_ARTIFACT_NAME_LENGTH}): {out[:80]!r}..."
        )
    return out


def conflict_message(run_id: str, name: str) -> str:
    """Azure ML's write-once conflict text."""
    return f"Resource Conflict: ArtifactId ExperimentRun/dcid.{run_id}/{name} already exists."


def artifact_uri(run_id: str, name: str) -> str:
    """The artifact reference an image/JSON metric holds (RUN_API.md §6.4)."""
    return f"aml://artifactId/ExperimentRun/dcid.{run_id}/{name}"
