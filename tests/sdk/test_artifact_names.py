"""Artifact name normalisation and the safety rules (shared by the SDK, the agent and the collector)."""

from __future__ import annotations

import pytest

from runwire.artifact_names import ArtifactNameError, artifact_uri, conflict_message, normalize_name
from runwire.exceptions import UserErrorException
from runwire.limits import MAX_ARTIFACT_NAME_LENGTH


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("outputs/model.pkl", "outputs/model.pkl"),
        ("./outputs/m.pkl", "outputs/m.pkl"),
        ("././outputs//m.pkl", "outputs/m.pkl"),
        ("a/./b", "a/b"),
        ("outputs\\win\\m.pkl", "outputs/win/m.pkl"),
        ("name with spaces.txt", "name with spaces.txt"),
        ("ünïcode/файл.txt", "ünïcode/файл.txt"),
        ("..hidden/x", "..hidden/x"),
    ],
)
def test_normalised(raw, expected):
    assert normalize_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("../x", r"'\.\.'"),
        ("a/../../x", r"'\.\.'"),
        ("a/..", r"'\.\.'"),
        ("/etc/passwd", "absolute"),
        ("\\\\server\\share", "absolute"),
        ("C:/Windows/x", "absolute"),
        ("nul\x00byte", "control character"),
        ("line\nbreak", "control character"),
        ("del\x7f", "control character"),
        ("", "empty"),
        (".", "empty"),
        ("folder/", "folder"),
        ("x" * (MAX_ARTIFACT_NAME_LENGTH + 1), "MAX_ARTIFACT_NAME_LENGTH"),
    ],
)
def test_refused_with_the_rule_named(raw, rule):
    with pytest.raises(ArtifactNameError, match=rule) as info:
        normalize_name(raw)
    assert isinstance(info.value, ValueError) and isinstance(info.value, UserErrorException)


def test_not_a_string():
    with pytest.raises(ArtifactNameError, match="must be a str"):
        normalize_name(b"bytes")


def test_azure_strings():
    assert conflict_message("r1", "outputs/m.pkl") == (
        "Resource Conflict: ArtifactId ExperimentRun/dcid.r1/outputs/m.pkl already exists."
    )
    assert artifact_uri("r1", "img.png") == "aml://artifactId/ExperimentRun/dcid.r1/img.png"
