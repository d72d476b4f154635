"""JSON-RPC framing and dispatch that answers every request, whatever the client sends.

pygls 2.1.1 reads frames and structures messages in its own loop, and when a request's
params fail to deserialize (a missing `position`, a negative line) it only logs "Unable to
handle message": the editor then waits forever for a reply. A Content-Length too large to
allocate ends its loop, and so the server. dgls reads frames itself and replies to every
request that carries an id:

- a body that is not JSON: ParseError (-32700), id null, as JSON-RPC asks;
- not a request object, or a bad `id`/`method`/`jsonrpc`: InvalidRequest (-32600);
- params that do not fit the method's type: InvalidParams (-32602), saying which field;
- a request before `initialize`: ServerNotInitialized (-32002) (notifications are dropped);
- a request after `shutdown`: InvalidRequest;
- an unknown method: MethodNotFound (-32601), from pygls.

Frames over MAX_MESSAGE_BYTES are read past and refused without being held in memory.
"""

from __future__ import annotations

import json
import logging
import re

import cattrs
from lsprotocol import types as t
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInvalidParams,
    JsonRpcInvalidRequest,
    JsonRpcMethodNotFound,
    JsonRpcParseError,
    JsonRpcServerNotInitialized,
)
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method
from pygls.protocol.json_rpc import JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage

log = logging.getLogger(__name__)

# Larger than any source file dgls completes in (maxFileBytes) after JSON escaping doubles it.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_HEADER_LINE = 8192
_CHUNK = 1 << 20


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, cattrs.ClassValidationError):
        # Paths as the client wrote them: $.params.textDocument, not text_document.
        text = "; ".join(cattrs.transform_error(exc))
        return re.sub(r"\.([a-z0-9]+(?:_[a-z0-9]+)+)", lambda m: "." + _camel(m.group(1)), text)[:500]
    return (str(exc).splitlines() or [type(exc).__name__])[0][:500]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _valid_id(value: object) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


class DglsProtocol(LanguageServerProtocol):
    def __init__(self, server, converter):
        super().__init__(server, converter)
        self.initialize_seen = False

    # dgls keeps its own documents (dgls/documents.py, clamping positions as LSP asks).
    # pygls's second copy would double the memory of every document, and its change logic
    # raises on ranges dgls clamps, which would keep dgls's handler from running at all.
    @lsp_method(t.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params):
        yield self.fm.features[t.TEXT_DOCUMENT_DID_OPEN], (params,), None

    @lsp_method(t.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params):
        yield self.fm.features[t.TEXT_DOCUMENT_DID_CHANGE], (params,), None

    @lsp_method(t.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params):
        yield self.fm.features[t.TEXT_DOCUMENT_DID_CLOSE], (params,), None

    def reply_error(self, msg_id, error: JsonRpcException) -> None:
        # A plain object: the typed one drops `"id": null`, which JSON-RPC requires.
        self._send_data({"jsonrpc": self.VERSION, "id": msg_id, "error": {"code": error.code, "message": error.message}})

    def known(self, method: str) -> bool:
        return method in self.fm.builtin_features or method in self.fm.features or method == t.CANCEL_REQUEST

    def receive(self, body: bytes) -> None:
        """Handle one frame's body."""
        try:
            data = json.loads(body)
        except ValueError as e:  # also invalid UTF-8
            self.reply_error(None, JsonRpcParseError(f"Parse error: {_one_line(e)}"))
            return
        if not isinstance(data, dict):
            self.reply_error(None, JsonRpcInvalidRequest(f"expected a JSON object, got {type(data).__name__}"))
            return
        has_id, method = "id" in data, data.get("method")
        msg_id = data.get("id")
        if has_id and not _valid_id(msg_id):
            self.reply_error(None, JsonRpcInvalidRequest("id must be an integer or a string"))
            return
        if "method" in data and not isinstance(method, str):
            if has_id:
                self.reply_error(msg_id, JsonRpcInvalidRequest("method must be a string"))
            return
        is_request = has_id and method is not None
        if data.get("jsonrpc") != self.VERSION:
            if is_request or has_id:
                self.reply_error(msg_id if is_request else None, JsonRpcInvalidRequest('jsonrpc must be "2.0"'))
            return
        if method is not None and not self.initialize_seen and method not in (t.INITIALIZE, t.EXIT):
            if is_request:
                self.reply_error(msg_id, JsonRpcServerNotInitialized("the server is not initialized yet"))
            return  # notifications before initialize are dropped, as LSP asks
        if self._shutdown and method is not None and method != t.EXIT:
            if is_request:
                self.reply_error(msg_id, JsonRpcInvalidRequest("the server is shutting down"))
            return
        if method is not None and not self.known(method):
            if is_request:
                self.reply_error(msg_id, JsonRpcMethodNotFound.of(method))
            return  # unknown notifications are ignored, as LSP asks
        try:
            message = self._structure(data, method, is_request)
        except Exception as e:  # noqa: BLE001 - any structuring failure is the client's params
            if is_request:
                self.reply_error(msg_id, JsonRpcInvalidParams(f"Invalid params for {method}: {_one_line(e)}"))
            else:
                log.warning("ignored %s: %s", method or "message", _one_line(e))
            return
        if method == t.INITIALIZE:
            self.initialize_seen = True
        self.handle_message(message)

    def _structure(self, data: dict, method: str | None, is_request: bool):
        if is_request:
            kind = self.get_message_type(method) or JsonRPCRequestMessage
        elif method is not None:
            kind = self.get_message_type(method) or JsonRPCNotification
        elif "error" in data:
            kind = t.ResponseErrorMessage
        else:
            kind = self._result_types.pop(data.get("id"), None) or JsonRPCResponseMessage
        return self._converter.structure(data, kind)


class StdinLines:
    """stdin as the reader `read_frames` wants, reading in a thread (pygls's way), with a
    bounded header line."""

    def __init__(self, stdin, executor):
        self.stdin, self.executor = stdin, executor

    async def readline(self) -> bytes:
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(self.executor, self.stdin.readline, MAX_HEADER_LINE)

    async def read(self, n: int) -> bytes:
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(self.executor, self.stdin.read, n)


class StreamLines:
    """An asyncio StreamReader (TCP) as the same reader."""

    def __init__(self, reader):
        self.reader = reader

    async def readline(self) -> bytes:
        try:
            return await self.reader.readline()
        except ValueError:  # a header line over the stream's limit: garbage, not the end
            return b"X-Overlong: 1\r\n"

    async def read(self, n: int) -> bytes:
        import asyncio

        try:
            return await self.reader.readexactly(n)
        except asyncio.IncompleteReadError as e:
            return e.partial


async def read_frames(reader, protocol: DglsProtocol, stop) -> None:
    """Read `Content-Length` frames until the end of input, handing each body to the protocol."""
    while not stop.is_set():
        headers: dict[str, str] = {}
        while True:
            line = await reader.readline()
            if not line:
                return
            if not line.strip():
                break
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if not headers:
            continue  # a stray blank line
        length = headers.get("content-length", "")
        if not (length.isascii() and length.isdigit()) or len(length) > 12:  # '²'.isdigit() is True
            # Where the body ends is unknown: the lines that follow are read as headers
            # until the next blank line.
            protocol.reply_error(None, JsonRpcParseError(f"missing or bad Content-Length header {length!r}"))
            continue
        size = int(length)
        if size > MAX_MESSAGE_BYTES:
            while size > 0:  # read past the body, never holding it
                got = await reader.read(min(size, _CHUNK))
                if not got:
                    return
                size -= len(got)
            protocol.reply_error(None, JsonRpcParseError(
                f"message of {int(length):,} bytes is over the {MAX_MESSAGE_BYTES:,}-byte limit"))
            continue
        body = await reader.read(size)
        if len(body) < size:
            return
        try:
            protocol.receive(body)
        except Exception:  # noqa: BLE001 - one message must never end the loop
            log.exception("failed to handle a message")
