"""The promises of SECURITY.md, each checked on the real thing."""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from .support.raw_lsp import RawServer

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [ROOT / "dgls", ROOT / "model", ROOT / "kernels"]  # what `pip install dgls` installs


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _connect_as_nobody(sock: Path) -> str:
    """In a child that drops to uid/gid nobody: try to connect; the errno name or 'connected'."""
    import errno
    import pwd

    nobody = pwd.getpwnam("nobody")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read)
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(sock))
            answer = b"connected"
        except OSError as e:
            answer = errno.errorcode.get(e.errno, str(e.errno)).encode()
        os.write(write, answer)
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as f:
        return f.read().decode()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to act as another user")
def test_another_user_cannot_reach_the_worker(random_checkpoint):
    parent = Path(tempfile.mkdtemp(prefix="dgls-sec-"))
    parent.chmod(0o755)  # others may enter the parent: only dgls's own modes stand in the way
    env = {**os.environ, "DGLS_RUNTIME_DIR": str(parent / "rt")}
    probe = subprocess.run([sys.executable, "-c", "from dgls.runtime import runtime_dir; print(runtime_dir())"],
                           env=env, capture_output=True, text=True, check=True)
    runtime = Path(probe.stdout.strip())
    sock = runtime / "worker.sock"
    worker = subprocess.Popen([sys.executable, "-m", "dgls.worker", "--model", str(random_checkpoint),
                               "--socket", str(sock), "--device", "cpu"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(sock)
        assert oct(runtime.stat().st_mode & 0o777) == "0o700" and oct(sock.stat().st_mode & 0o777) == "0o600"
        assert _connect_as_nobody(sock) == "EACCES"  # the directory stops it
        runtime.chmod(0o755)  # and if the directory were opened, the socket's own mode would
        assert _connect_as_nobody(sock) == "EACCES"
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(sock))  # its owner connects
        s.close()
    finally:
        worker.terminate()
        worker.wait(30)
        import shutil

        shutil.rmtree(parent, ignore_errors=True)


def _shipped_sources():
    for root in SHIPPED:
        yield from sorted(root.rglob("*.py"))


def test_no_pickle_no_remote_code_in_shipped_code():
    """No pickle-family imports, no torch.load without weights_only=True, no
    trust_remote_code argument, no eval/exec, anywhere in the installed packages."""
    problems = []
    for path in _shipped_sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                bad = {"pickle", "cPickle", "dill", "cloudpickle", "shelve", "marshal", "joblib"}
                if any(n and n.split(".")[0] in bad for n in names):
                    problems.append(f"{where}: imports {names}")
            if isinstance(node, ast.Call):
                fn = node.func
                name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
                keywords = {k.arg: k.value for k in node.keywords}
                if name in ("eval", "exec") and isinstance(fn, ast.Name):
                    problems.append(f"{where}: {name}()")
                if name == "load" and isinstance(fn, ast.Attribute) and getattr(fn.value, "id", "") == "torch":
                    weights_only = keywords.get("weights_only")
                    if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                        problems.append(f"{where}: torch.load without weights_only=True")
                if "trust_remote_code" in keywords:
                    problems.append(f"{where}: trust_remote_code")
    assert not problems, problems
    assert len(list(_shipped_sources())) > 20  # the scan saw the packages


def _socket_inodes(pid: int) -> set[int]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def _network_sockets() -> dict[int, str]:
    """inode -> 'proto local-address' for every TCP/UDP/raw socket of this network namespace."""
    out = {}
    for proto in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
        try:
            lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            out[int(fields[9])] = f"{proto} {fields[1]} state {fields[3]}"
    return out


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_serve_and_worker_open_no_network_sockets(tmp_path, fixed_checkpoint):
    from .e2e.conftest import SMALL, worker_pids

    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    server = RawServer({"DGLS_RUNTIME_DIR": str(runtime), "DGLS_MODEL": str(fixed_checkpoint)})
    try:
        server.initialize(SMALL)
        uri = "file:///p/a.py"
        server.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                                                "text": "def f(value):\n    return \n"}})
        reply = server.call("textDocument/inlineCompletion", {"textDocument": {"uri": uri},
                                                              "position": {"line": 1, "character": 11},
                                                              "context": {"triggerKind": 1}})
        assert reply["result"]["items"]  # the whole path ran: server, worker, model
        (worker,) = worker_pids(runtime)
        network = _network_sockets()
        for pid in (server.proc.pid, worker):
            sockets = _socket_inodes(pid)
            assert sockets  # it has sockets (stdio is pipes; the worker link is a Unix socket) ...
            assert not sockets & network.keys(), [network[i] for i in sockets & network.keys()]  # ... none network
    finally:
        server.close()
        for pid in worker_pids(runtime):
            os.kill(pid, 15)


def _listening(port: int, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [entry for entry in _network_sockets().values()
                 if entry.split()[1].endswith(f":{port:04X}") and entry.endswith("state 0A")]
        if found:
            return found
        time.sleep(0.1)
    return []


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("arg, address", [("{port}", "0100007F"), ("0.0.0.0:{port}", "00000000")])
def test_tcp_listens_on_loopback_unless_told(tmp_path, arg, address):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    proc = subprocess.Popen([sys.executable, "-m", "dgls.cli", "serve", "--tcp", arg.format(port=port)],
                            env={**os.environ, "DGLS_RUNTIME_DIR": str(tmp_path)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        found = _listening(port)
        assert found and all(entry.split()[1] == f"{address}:{port:04X}" for entry in found), found
    finally:
        proc.kill()
        proc.wait()
