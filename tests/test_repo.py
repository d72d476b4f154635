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
    """On a fresh .venv, then only the VS Code browser test, as a step of its own (its
    install is too long for README's command, where that test skips)."""
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    at = ci_lines.index(readme_command("test-command"))
    assert ci_lines[at - 1] == "rm -rf .venv"
    after = "\n".join(ci_lines[at + 1:])
    assert after.startswith("if ! tests/e2e/vscode_browser_install.sh; then") and "exit 1" in after
    assert ci_lines[-1].endswith("python -m pytest -rs tests/e2e/test_vscode_browser.py")


def test_readme_commands_install_the_cpu_torch_first():
    run = readme_command("run-command")
    assert run.index("torch==2.13.0") < run.index("pip install -e")
    assert readme_command("test-command") == "tests/run.sh"
    script = (ROOT / "tests" / "run.sh").read_text()
    assert script.index("pip install -q torch==2.13.0") < script.index('pip install -q -c tests/constraints.txt -e ".[dev]"')


def test_the_test_lock_pins_every_installed_dependency_exactly():
    """The suite runs against tests/constraints.txt: every line an exact pin, covering every
    dev and browser-e2e dependency named in pyproject.toml (a new one must be locked on purpose)."""
    import tomllib

    lines = [line for line in (ROOT / "tests" / "constraints.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    pins = dict(line.split("==") for line in lines)
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][^ ;]*", line) for line in lines), lines
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # browser-e2e too: tests/e2e/vscode_browser_install.sh installs it under this lock.
    extras = project["optional-dependencies"]
    wanted = project["dependencies"] + extras["dev"] + extras["browser-e2e"]
    names = {re.split(r"[<>=!~\[ ]", spec)[0].lower().replace("_", "-") for spec in wanted}
    locked = {name.lower().replace("_", "-") for name in pins}
    assert names - {"torch"} <= locked, names - locked
    assert "torch" not in locked  # pinned by the install command (the CPU build on disk)


def test_no_source_file_grows_past_600_lines():
    """A file that long holds more than one concern: split it (docs/architecture.md)."""
    paths = [p for top in ("dgls", "model", "kernels", "bench", "tests") for p in sorted((ROOT / top).rglob("*.py"))]
    long = {str(path.relative_to(ROOT)): n for path in paths if (n := len(path.read_text().splitlines())) > 600}
    assert not long, long
