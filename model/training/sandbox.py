"""Run untrusted test code (a completed program plus its tests) in a limited subprocess.

The program goes to `python -I -` on stdin (isolated mode: no PYTHON* variables, no user
site-packages, no script directory on sys.path), in a fresh empty temporary directory that
is deleted afterwards, in its own session so a timeout kills everything it started, with
resource limits set before it starts: CPU seconds, address space, size of files written,
open files, no core dumps. Nothing here blocks the network: evaluation cases must not
need it, and a machine that must be sure should run the evaluation without a network.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from ..dataclass_args import opt


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = opt(10.0, "wall-clock limit per test program")
    memory_mib: int = opt(1024, "address-space limit")
    file_mib: int = opt(16, "largest file the program may write")
    open_files: int = opt(64, "open file descriptors")
    output_chars: int = opt(2000, "tail of stdout+stderr kept in the report")


@dataclass
class Outcome:
    status: str  # "passed" | "failed" | "timeout" | "killed" (by a limit's signal)
    returncode: int | None
    output: str  # the tail of stdout and stderr


def _limiter(limits: SandboxLimits):
    cpu = int(limits.timeout_s) + 1
    mem = limits.memory_mib * 2**20
    size = limits.file_mib * 2**20

    def apply() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def run_python(program: str, limits: SandboxLimits = SandboxLimits()) -> Outcome:
    # Output goes to a file outside the working directory, so the file-size limit caps it too
    # (a pipe would let a program that prints forever fill the evaluator's memory).
    with tempfile.TemporaryDirectory(prefix="dgls-sandbox-") as cwd, \
            tempfile.TemporaryFile(prefix="dgls-sandbox-out-") as log:
        env = {"PATH": os.defpath, "HOME": cwd, "TMPDIR": cwd, "LANG": "C.UTF-8"}
        proc = subprocess.Popen(
            [sys.executable, "-I", "-B", "-"], cwd=cwd, env=env, stdin=subprocess.PIPE,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_limiter(limits))
        try:
            proc.communicate(program.encode("utf-8", "surrogatepass"), timeout=limits.timeout_s)
            status = "passed" if proc.returncode == 0 else "killed" if proc.returncode < 0 else "failed"
        except subprocess.TimeoutExpired:
            status = "timeout"
        finally:
            _kill_group(proc)
        log.seek(max(0, os.fstat(log.fileno()).st_size - 4 * limits.output_chars))
        text = log.read().decode("utf-8", "replace")[-limits.output_chars:]
        return Outcome(status, proc.returncode, text)


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the program and anything it left running in its session."""
    with contextlib.suppress(ProcessLookupError):  # the whole group has exited already
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
