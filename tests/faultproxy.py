"""A loopback TCP proxy in front of the test S3 server that refuses writes: every request whose
method is PUT or POST (and whose request line holds `pattern`, if given) is answered `500
InternalError`, as SeaweedFS answers when it has no volume left, and its connection closed; every
other request passes through untouched."""

from __future__ import annotations

import asyncio
import threading

from tests.ports import free_port

REFUSAL = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\nConnection: close\r\n"
           b"Content-Length: %d\r\n\r\n%s")
BODY = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
        b"<Message>We encountered an internal error. Please try again.</Message></Error>")


class RefusingProxy:
    def __init__(self, upstream: str, pattern: bytes = b"") -> None:
        self.pattern = pattern
        host_port = upstream.split("://", 1)[-1]
        self.upstream_host, port = host_port.rsplit(":", 1)
        self.upstream_port = int(port)
        self.refused = 0
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        ready.set()
        self.loop.run_forever()

    async def _handle(self, client_r, client_w) -> None:
        first = await client_r.read(1 << 16)
        if self._refused(first):
            self.refused += 1
            client_w.write(REFUSAL % (len(BODY), BODY))
            await client_w.drain()
            client_w.close()
            return
        up_r, up_w = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        up_w.write(first)

        async def pipe(reader, writer, requests: bool) -> None:
            while data := await reader.read(1 << 16):
                if requests and self._refused(data):  # a write later on a kept-alive connection
                    self.refused += 1
                    client_w.write(REFUSAL % (len(BODY), BODY))
                    break
                writer.write(data)
                await writer.drain()
            writer.close()

        await asyncio.gather(pipe(client_r, up_w, True), pipe(up_r, client_w, False), return_exceptions=True)

    def _refused(self, data: bytes) -> bool:
        return data.startswith((b"PUT ", b"POST ")) and self.pattern in data.split(b"\r\n", 1)[0]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def __enter__(self) -> "RefusingProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
