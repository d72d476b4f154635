"""A raw JSON-RPC client of the real `dgls serve` over stdio: it can send any bytes (broken
frames, non-JSON, wrong types) and collects every reply by id, so a test can check that each
request was answered exactly once."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time


class RawServer:
    def __init__(self, env: dict[str, str], *, stderr=subprocess.DEVNULL):
        self.proc = subprocess.Popen([sys.executable, "-m", "dgls.cli", "serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=stderr, env={**os.environ, **env})
        self.replies: dict[object, list[dict]] = {}  # id -> every reply with that id (one, if all is well)
        self.null_errors: list[dict] = []  # errors about messages without a usable id
        self.notifications: list[dict] = []
        self._ids = itertools.count(1)
        self._write = threading.Lock()
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    # --- sending

    def send_bytes(self, data: bytes) -> None:
        with self._write:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def send_body(self, body: bytes) -> None:
        self.send_bytes(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def send(self, message: dict) -> None:
        self.send_body(json.dumps(message).encode())

    def notify(self, method: str, params=None) -> None:
        self.send({"jsonrpc": "2.0", "method": method, **({} if params is None else {"params": params})})

    def request(self, method: str, params=None, *, msg_id=None) -> object:
        msg_id = next(self._ids) if msg_id is None else msg_id
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, **({} if params is None else {"params": params})})
        return msg_id

    def call(self, method: str, params=None, timeout: float = 60) -> dict:
        return self.wait(self.request(method, params), timeout)

    def initialize(self, options: dict | None = None, capabilities: dict | None = None) -> dict:
        reply = self.call("initialize", {"processId": None, "rootUri": None, "capabilities": capabilities or {},
                                         "initializationOptions": options or {}})
        self.notify("initialized", {})
        return reply

    # --- receiving

    def wait(self, msg_id, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self.replies.get(msg_id):
                left = deadline - time.monotonic()
                if left <= 0 or not self.alive():
                    raise AssertionError(f"no reply to request {msg_id!r} within {timeout} s (alive: {self.alive()})")
                self._cond.wait(min(left, 0.5))
            return self.replies[msg_id][0]

    def wait_null_errors(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.null_errors) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} errors with a null id, got {self.null_errors}")
                self._cond.wait(min(left, 0.5))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            headers = {}
            while True:
                line = out.readline()
                if not line:
                    with self._cond:
                        self._cond.notify_all()
                    return
                if line == b"\r\n":
                    break
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            message = json.loads(out.read(int(headers["content-length"])))
            if "method" in message and "id" in message:  # the server asks (progress tokens): agree
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": None})
                continue
            with self._cond:
                if "method" in message:
                    self.notifications.append(message)
                elif message.get("id") is None:
                    self.null_errors.append(message)
                else:
                    self.replies.setdefault(message["id"], []).append(message)
                self._cond.notify_all()

    def close(self) -> int:
        if self.alive():
            try:
                self.call("shutdown", timeout=10)
                self.notify("exit")
                return self.proc.wait(10)
            except (AssertionError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
        return self.proc.wait(10)
