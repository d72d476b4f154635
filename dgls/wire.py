"""Frames between servers and the worker: a 4-byte big-endian length, then one msgpack map.

msgpack carries plain data only (no pickle, no code); frames over MAX_FRAME are refused
before they are read.
"""

from __future__ import annotations

import asyncio
import struct

import msgpack

MAX_FRAME = 16 * 1024 * 1024
_LENGTH = struct.Struct(">I")


class FrameError(ValueError):
    pass


def encode(message: dict) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes is over the {MAX_FRAME}-byte limit")
    return _LENGTH.pack(len(body)) + body


async def read(reader: asyncio.StreamReader) -> dict | None:
    """The next message, or None at a clean end of stream."""
    try:
        header = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise FrameError("connection closed inside a frame header") from None
    (length,) = _LENGTH.unpack(header)
    if length > MAX_FRAME:
        raise FrameError(f"frame of {length} bytes is over the {MAX_FRAME}-byte limit")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise FrameError("connection closed inside a frame") from None
    try:
        message = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except (msgpack.UnpackException, ValueError) as e:
        raise FrameError(f"undecodable frame: {e}") from None
    if not isinstance(message, dict):
        raise FrameError("a frame must hold a map")
    return message
