"""The README documents every limit and every CLI command, and CI runs exactly its test command."""

from __future__ import annotations

import re
from pathlib import Path

import runwire.limits
import runwire.server.limits
import runwire.server.studio.limits
from runwire.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_named_limit_is_documented():
    for module in (runwire.limits, runwire.server.limits, runwire.server.studio.limits):
        for name in dir(module):
            if name.isupper():
                assert f"`{name}`" in README, f"{module.__name__}.{name} is missing from the README's Limits table"


def test_every_cli_command_and_flag_is_documented():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        assert f"### `runwire {name}`" in README
        for action in command._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert flag in README, f"runwire {name} {flag} is not documented"


def test_ci_runs_the_readme_test_command():
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    test_block = next(b for b in blocks if "pytest" in b)
    command = next(line for line in test_block.splitlines() if line and not line.startswith("#"))
    ci = (ROOT / ".ci" / "run").read_text()
    ci_command = next(line for line in ci.splitlines() if "pytest" in line)
    assert ci_command.replace(" -q", "") == command.replace(" -q", "")
