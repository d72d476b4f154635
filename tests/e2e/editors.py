"""What the editor tests share: where the integrations live and how `dgls` is started."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EDITORS = ROOT / "editors"


def dgls_command() -> str:
    """The `dgls` console script of the running interpreter's environment (what a user's
    editor finds on PATH once dgls is installed)."""
    beside = Path(sys.executable).parent / "dgls"
    return str(beside) if beside.exists() else (shutil.which("dgls") or "dgls")


def server_env(runtime, model) -> dict[str, str]:
    """The environment an editor starts `dgls serve` with: `dgls` on PATH, the test's model
    and private runtime directory."""
    path = f"{Path(dgls_command()).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, "DGLS_RUNTIME_DIR": str(runtime), "DGLS_MODEL": str(model)}
