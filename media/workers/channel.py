"""The local socket between the server and a relay worker: framed JSON, both ways.

A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON (an object).
The server's frames are requests, `{"id": n, "op": name, "args": {...}}`; the
worker's are answers, `{"re": n, "ok": value}` or `{"re": n, "error": message}`,
and events it sends by itself, `{"event": name, ...}` (link reports, peers gone).
The stdlib is enough: SDP and link reports are a few kilobytes, a handful a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from typing import Any

HEADER = struct.Struct(">I")
# A frame larger than this is a broken peer, not an SDP (a big offer is ~10 KB).
MAX_FRAME = 16 << 20

Message = dict[str, Any]


class ChannelClosed(Exception):
    """The other end closed the socket or went away."""


def encode(message: Message) -> bytes:
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > MAX_FRAME:
        raise ValueError(f"a frame of {len(body)} bytes is over {MAX_FRAME}")
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> Message:
    message = json.loads(body)
    if not isinstance(message, dict):
        raise ValueError("a frame must hold a JSON object")
    return message


class Channel:
    """One end of the socket, on asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def over(cls, sock: socket.socket) -> Channel:
        reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_FRAME)
        return cls(reader, writer)

    def send(self, message: Message) -> None:
        """Queue a frame. Frames are written in the order sent; the socket's buffer
        holds them while the other end reads (both ends read all the time)."""
        if self._writer.is_closing():
            raise ChannelClosed("the channel is closed")
        self._writer.write(encode(message))

    async def receive(self) -> Message:
        """The next frame; ChannelClosed at the end of the stream."""
        try:
            header = await self._reader.readexactly(HEADER.size)
            (length,) = HEADER.unpack(header)
            if length > MAX_FRAME:
                raise ChannelClosed(f"a frame of {length} bytes announced")
            return decode(await self._reader.readexactly(length))
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise ChannelClosed("the other end closed the channel") from exc

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


def send_blocking(sock: socket.socket, message: Message) -> None:
    """Write a frame on a blocking socket (a worker's greeting, before its loop)."""
    sock.sendall(encode(message))


def receive_blocking(sock: socket.socket) -> Message:
    """Read a frame on a blocking socket (the server waiting for a worker's greeting)."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ChannelClosed("the other end closed the channel")
            data += chunk
        return data

    (length,) = HEADER.unpack(exactly(HEADER.size))
    if length > MAX_FRAME:
        raise ChannelClosed(f"a frame of {length} bytes announced")
    return decode(exactly(length))
