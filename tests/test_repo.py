"""Promises about the repository itself that a newcomer and CI rely on."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_command(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\n```sh\n(.+?)\n```", text)
    assert match, f"README has no {marker}"
    return match.group(1)


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci_lines[-1] == readme_command("test-command")


def test_readme_commands_install_the_cpu_torch_first():
    for marker in ("run-command", "test-command"):
        command = readme_command(marker)
        assert command.index("torch==2.13.0") < command.index("pip install -q -e" if "-q -e" in command else "pip install -e")
