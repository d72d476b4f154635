"""Every request to the real `dgls serve` gets a reply, whatever arrives on its stdin.

pygls 2.1.1 alone leaves a request whose params fail to deserialize unanswered (the editor
waits forever); dgls/protocol.py answers it. No model here: these are protocol answers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from .support.raw_lsp import RawServer

URI = "file:///p/a.py"
INLINE = "textDocument/inlineCompletion"


@pytest.fixture
def server(tmp_path):
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    s = RawServer({"DGLS_RUNTIME_DIR": str(runtime), "DGLS_MODEL": str(tmp_path / "no-model")})
    yield s
    s.close()


def inline_params(**position):
    return {"textDocument": {"uri": URI}, "context": {"triggerKind": 1}, **position}


def code(reply: dict) -> int | None:
    return reply.get("error", {}).get("code")


def test_requests_before_initialize_get_server_not_initialized(server):
    assert code(server.call(INLINE, inline_params(position={"line": 0, "character": 0}))) == -32002
    assert code(server.call("workspace/executeCommand", {"command": "dgls.status"})) == -32002
    server.notify("textDocument/didOpen", {"textDocument": {"uri": URI, "languageId": "python", "version": 1,
                                                            "text": "x = 1\n"}})
    assert "result" in server.initialize()
    # The didOpen before initialize was dropped, as LSP asks.
    assert server.call("workspace/executeCommand", {"command": "dgls.document", "arguments": [URI]})["result"] is None


BAD_PARAMS = [
    (inline_params(), "required field missing @ $.params.position"),
    (inline_params(position={"line": -1, "character": 0}), "$.params.position"),
    (inline_params(position={"line": 0, "character": {"a": 1}}), "$.params.position"),
    (inline_params(position={"line": 2 ** 40, "character": 0}), "$.params.position"),
    ({"position": {"line": 0, "character": 0}, "context": {"triggerKind": 1}}, "$.params.textDocument"),
    ([1, 2, 3], "$.params"),
]


def test_params_that_do_not_fit_get_invalid_params(server):
    server.initialize()
    for params, field in BAD_PARAMS:
        reply = server.call(INLINE, params)
        assert code(reply) == -32602 and field in reply["error"]["message"], (params, reply)
        assert "\n" not in reply["error"]["message"]
    assert server.alive()


def test_garbage_frames_get_errors_with_a_null_id(server):
    server.initialize()
    cases = [
        (b"not json", -32700),
        (b"\xff\xfe\x00garbage", -32700),  # not UTF-8
        (b"[1, 2]", -32600),  # batches are not LSP
        (b"42", -32600),
        (json.dumps({"jsonrpc": "2.0", "id": [1], "method": "x"}).encode(), -32600),
        (json.dumps({"jsonrpc": "2.0", "id": True, "method": "x"}).encode(), -32600),
    ]
    for i, (body, expected) in enumerate(cases, start=1):
        server.send_body(body)
        server.wait_null_errors(i)
        assert code(server.null_errors[-1]) == expected and server.null_errors[-1]["id"] is None
    server.send_bytes(b"Content-Length: abc\r\n\r\n")  # no usable length: nothing read as a body
    server.wait_null_errors(len(cases) + 1)
    server.send_bytes(b"X-Unknown: 1\r\n\r\n")
    server.wait_null_errors(len(cases) + 2)
    # Digits Python's int() refuses: a superscript two ('\xb2' in latin-1), and 5000 digits.
    server.send_bytes(b"Content-Length: \xb2\r\n\r\n")
    server.wait_null_errors(len(cases) + 3)
    server.send_bytes(b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n")
    server.wait_null_errors(len(cases) + 4)
    assert "result" in server.call("workspace/executeCommand", {"command": "dgls.status"})


def test_oversized_frames_are_refused_without_being_held(server):
    from dgls.protocol import MAX_MESSAGE_BYTES

    server.initialize()
    server.send_body(b" " * (MAX_MESSAGE_BYTES + 1))
    server.wait_null_errors(1)
    assert "over the" in server.null_errors[0]["error"]["message"]
    assert "result" in server.call("workspace/executeCommand", {"command": "dgls.status"})


def test_bad_ids_methods_and_versions(server):
    server.initialize()
    assert code(server.call("no/such/method", {})) == -32601
    assert code(server.call("no/such/method")) == -32601
    reply = server.wait(server.request("x", msg_id="a string id"))
    assert reply["id"] == "a string id" and code(reply) == -32601
    server.send({"jsonrpc": "1.0", "id": 900, "method": "workspace/executeCommand", "params": {"command": "dgls.status"}})
    assert code(server.wait(900)) == -32600
    server.send({"jsonrpc": "2.0", "id": 901, "method": 7})
    assert code(server.wait(901)) == -32600
    # A notification nobody knows is ignored, and so is one with bad params.
    server.notify("no/such/notification", {})
    server.notify("textDocument/didOpen", {"textDocument": {"uri": URI}})
    assert "result" in server.call("workspace/executeCommand", {"command": "dgls.status"})


def test_commands_check_their_arguments(server):
    server.initialize()
    assert code(server.call("workspace/executeCommand", {"command": "dgls.nope"})) == -32602
    assert code(server.call("workspace/executeCommand", {"command": "dgls.document", "arguments": [1, 2]})) == -32602
    server.notify("textDocument/didOpen", {"textDocument": {"uri": URI, "languageId": "python", "version": 3,
                                                            "text": "héllo 🎉\n"}})
    got = server.call("workspace/executeCommand", {"command": "dgls.document", "arguments": [URI]})["result"]
    import hashlib

    assert got == {"version": 3, "length": 8, "sha256": hashlib.sha256("héllo 🎉\n".encode()).hexdigest()}


def test_requests_after_shutdown_are_refused_and_exit_ends_the_process(server):
    server.initialize()
    assert server.call("shutdown")["result"] is None
    assert code(server.call("workspace/executeCommand", {"command": "dgls.status"})) == -32600
    server.notify("exit")
    assert server.proc.wait(10) == 0


def test_every_request_in_a_burst_is_answered_once(server):
    server.initialize()
    ids = []
    for i in range(200):
        params = inline_params(position={"line": i % 3 - 1, "character": 0}) if i % 2 else {"command": "dgls.status"}
        ids.append(server.request(INLINE if i % 2 else "workspace/executeCommand", params))
    for msg_id in ids:
        server.wait(msg_id)
    assert all(len(server.replies[i]) == 1 for i in ids)


def frame(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_a_close_and_reopen_in_one_read_keeps_the_reopened_document(tmp_path):
    """VS Code closes and reopens a document when its language changes; over TCP both
    notifications often arrive in one read. The reopened document must be there after."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "DGLS_RUNTIME_DIR": str(runtime), "DGLS_MODEL": str(tmp_path / "no-model")}
    proc = subprocess.Popen([sys.executable, "-m", "dgls.cli", "serve", "--tcp", f"127.0.0.1:{port}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "dgls serve --tcp did not listen"
                time.sleep(0.1)
        with conn:
            replies = conn.makefile("rb")
            conn.sendall(frame({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                "params": {"processId": None, "rootUri": None, "capabilities": {},
                                           # a remote backend that is down: its start-up check runs alongside
                                           "initializationOptions": {"backend": "vllm",
                                                                     "remoteUrl": "http://127.0.0.1:9"}}}))
            assert read_reply(replies, 1)
            conn.sendall(frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
            for version in range(1, 11):
                reopened = {"textDocument": {"uri": URI, "languageId": "python", "version": version,
                                             "text": f"b = {version}\n"}}
                conn.sendall(frame({"jsonrpc": "2.0", "method": "textDocument/didClose",
                                    "params": {"textDocument": {"uri": URI}}})
                             + frame({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": reopened}))
                time.sleep(0.05)  # both handled before the question
                conn.sendall(frame({"jsonrpc": "2.0", "id": 100 + version, "method": "workspace/executeCommand",
                                    "params": {"command": "dgls.document", "arguments": [URI]}}))
                got = read_reply(replies, 100 + version)["result"]
                assert got is not None and got["version"] == version
    finally:
        proc.kill()
        proc.wait(10)


def read_reply(stream, msg_id) -> dict:
    while True:
        headers = {}
        while (line := stream.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        assert headers, "the server closed the connection"
        message = json.loads(stream.read(int(headers["content-length"])))
        if message.get("id") == msg_id and "method" not in message:
            return message


def test_a_model_path_that_does_not_exist_is_said_once_not_an_internal_error(server):
    """DGLS_MODEL names a directory that is not there: each request gets an empty answer
    (no error reply, no traceback) and the editor's log says why, once."""
    server.initialize()
    server.notify("textDocument/didOpen", {"textDocument": {"uri": URI, "languageId": "python", "version": 1,
                                                            "text": "def f(x):\n    return \n"}})
    for _ in range(3):
        reply = server.call(INLINE, inline_params(position={"line": 1, "character": 11}))
        assert "error" not in reply and not (reply["result"] or {}).get("items")
    said = [n["params"]["message"] for n in server.notifications
            if n["method"] == "window/logMessage" and "no-model" in n["params"]["message"]]
    assert len(said) == 1 and "\n" not in said[0]
