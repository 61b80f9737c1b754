"""HTTP/1.1 spoken byte by byte over a socket, for what no well-behaved client will send.

aiohttp's client refuses to send a header that is not ASCII and always sends a request whole;
the abuse probes (and the tests of connection limits) need both: half a request, then silence;
``Authorization: Bearer \\xff\\xfe``. Only what those need: a request of raw bytes, the answer's
status, headers and body (``Content-Length`` bodies, which is all shopkeep sends), and how long
the server took to close a connection.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import msgspec

END_OF_HEADERS = b"\r\n\r\n"


@dataclass(frozen=True)
class RawAnswer:
    """One HTTP answer as it came: status, headers (names lower case), body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def problem_code(self) -> str | None:
        """The ``code`` of a problem+json body, else None."""
        if "json" not in self.headers.get("content-type", ""):
            return None
        decoded = msgspec.json.decode(self.body)
        return decoded.get("code") if isinstance(decoded, dict) else None


def request_bytes(method: str, path: str, headers: dict[str, bytes], body: bytes = b"") -> bytes:
    """A whole HTTP/1.1 request; header values are bytes, sent as they are."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    if body or method in ("POST", "PATCH", "PUT"):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + END_OF_HEADERS + body


async def read_answer(reader: asyncio.StreamReader) -> RawAnswer:
    """Read one answer with a ``Content-Length`` body (IncompleteReadError if cut short)."""
    head = await reader.readuntil(END_OF_HEADERS)
    status_line, *lines = head[: -len(END_OF_HEADERS)].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawAnswer(int(status_line.split()[1]), headers, body)


async def exchange(host: str, port: int, request: bytes, timeout_s: float = 10.0) -> RawAnswer:
    """Send ``request`` on a new connection and read its answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        async with asyncio.timeout(timeout_s):
            return await read_answer(reader)
    finally:
        writer.close()


async def seconds_until_closed(reader: asyncio.StreamReader, within_s: float) -> float | None:
    """How long the server took to close the connection (reading and dropping whatever it
    sent), or None when it was still open after ``within_s``."""
    began = time.monotonic()
    try:
        async with asyncio.timeout(within_s):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return None
    except ConnectionError:
        pass  # closed with a reset: closed all the same
    return time.monotonic() - began
