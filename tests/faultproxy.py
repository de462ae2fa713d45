"""A loopback TCP proxy in front of the test S3 server, for fault injection in the tests and for the
object-store benchmark. It counts the HTTP requests it passes on and can hold each back by a fixed
delay (a real store's latency), and listings (LIST requests) by a delay of their own. Faults:
- `refuse_writes`: every request whose method is PUT or POST (and whose request line holds `pattern`,
  if given) is answered `500 InternalError`, as SeaweedFS answers when it has no volume left (the
  client tries again, backing off), or with `deny`, `403 AccessDenied`, as a bucket policy answers
  (the client gives up at once);
- `slow_down`: that fraction of requests (chosen by a seeded draw) is answered `503 SlowDown`, a
  store's throttling;
- `reset`: that fraction of requests gets no answer: the connection is reset;
- `stall`: that fraction of requests is held without an answer for as long as the client waits;
- `hold`: every PUT whose request line holds these bytes waits until `release()` (counted in
  `held`): the writers are caught mid-task, for as long as a test needs;
- `hold_listings_after`: of the listings whose request line holds `listing_pattern`, the answers
  to those after that many come with their headers, then a byte of their body every half second,
  until `release()`, a PUT whose request line holds `release_on`, or a minute: a listing still going
  on for as long as a test needs (a client gives up on an answer that stops coming).
A faulted request's connection is closed."""

from __future__ import annotations

import asyncio
import random
import threading

from tests.ports import free_port

REFUSAL = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\nConnection: close\r\n"
           b"Content-Length: %d\r\n\r\n%s")
BODY = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
        b"<Message>We encountered an internal error. Please try again.</Message></Error>")
DENIAL = (b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nConnection: close\r\n"
          b"Content-Length: %d\r\n\r\n%s")
DENIAL_BODY = b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>'
SLOW_DOWN = (b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
             b"Content-Length: %d\r\n\r\n%s")
SLOW_BODY = b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>'
HOLD_LISTINGS_S = 60.0  # then a held listing goes on: a test of code that waits for it fails, not hangs
METHODS = (b"GET ", b"PUT ", b"POST ", b"HEAD ", b"DELETE ")


class Proxy:
    def __init__(self, upstream: str, delay_s: float = 0.0, refuse_writes: bool = False, pattern: bytes = b"",
                 slow_down: float = 0.0, reset: float = 0.0, stall: float = 0.0, seed: int = 0,
                 list_delay_s: float = 0.0, hold: bytes = b"", deny: bool = False,
                 hold_listings_after: int | None = None, listing_pattern: bytes = b"", release_on: bytes = b"") -> None:
        """`upstream` is the server's endpoint (http://HOST:PORT)."""
        self.hold, self.held = hold, 0
        self.hold_listings_after, self.listing_pattern, self.release_on = hold_listings_after, listing_pattern, release_on
        self.matched_listings = 0  # listings whose request line holds listing_pattern
        self.list_delay_s, self.listings = list_delay_s, 0
        self.slow_down, self.reset, self.stall, self.random = slow_down, reset, stall, random.Random(seed)
        self.faults = 0
        self.upstream_host, port = upstream.split("://", 1)[-1].rsplit(":", 1)
        self.upstream_port = int(port)
        self.delay_s, self.refuse_writes, self.pattern, self.deny = delay_s, refuse_writes, pattern, deny
        self.requests = self.refused = 0
        self.connections: set = set()  # every stream opened, closed with the proxy (no socket left to the GC)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.gate = asyncio.Event()
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

    def _refused(self, data: bytes) -> bool:
        return (self.refuse_writes and data.startswith((b"PUT ", b"POST "))
                and self.pattern in data.split(b"\r\n", 1)[0])

    async def _handle(self, client_r, client_w) -> None:
        self.connections.add(client_w)
        up_r, up_w = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        self.connections.add(up_w)
        trickle = [False]  # this connection's answer to a held listing

        async def pipe(reader, writer, requests: bool) -> None:
            while data := await reader.read(1 << 16):
                line = data.split(b"\r\n", 1)[0]  # a request line, if a request starts this read
                if not requests and trickle[0]:
                    data = await self._trickle(data, writer)
                if requests and self.release_on and data.startswith(b"PUT ") and self.release_on in line:
                    self.gate.set()
                if requests and self.hold and data.startswith(b"PUT ") and self.hold in line:
                    self.held += 1
                    await self.gate.wait()
                if requests and self._refused(data):  # a request line at the start of a read
                    self.refused += 1
                    client_w.write(DENIAL % (len(DENIAL_BODY), DENIAL_BODY) if self.deny else REFUSAL % (len(BODY), BODY))
                    break
                if requests and data.startswith(METHODS) and (self.slow_down or self.reset or self.stall):
                    draw = self.random.random()
                    if draw < self.slow_down + self.reset + self.stall:
                        self.faults += 1
                        if draw < self.slow_down:
                            client_w.write(SLOW_DOWN % (len(SLOW_BODY), SLOW_BODY))
                        elif draw < self.slow_down + self.reset:
                            client_w.transport.abort()  # a reset: no answer at all
                        else:
                            await client_r.read()  # a stall: nothing until the client gives up
                        break
                if requests and b" HTTP/1.1\r\n" in data:
                    self.requests += data.count(b" HTTP/1.1\r\n")
                    listing = data.startswith(b"GET ") and b"list-type=2" in line
                    self.listings += listing
                    if listing and self.hold_listings_after is not None and self.listing_pattern in line:
                        self.matched_listings += 1
                        trickle[0] = self.matched_listings > self.hold_listings_after
                        if self.matched_listings == self.hold_listings_after + 1:  # the first held: at most a minute
                            self.loop.call_later(HOLD_LISTINGS_S, self.gate.set)
                    else:
                        trickle[0] = False
                    await asyncio.sleep(self.delay_s + (self.list_delay_s if listing else 0.0))
                writer.write(data)
                await writer.drain()
            writer.close()

        await asyncio.gather(pipe(client_r, up_w, True), pipe(up_r, client_w, False), return_exceptions=True)

    async def _trickle(self, data: bytes, writer) -> bytes:
        """Pass on an answer's headers at once (a client times out on a body that does not come), then
        its body a byte every half second until the gate opens; returns what is left to pass on."""
        if b"\r\n\r\n" in data:
            head, _, data = data.partition(b"\r\n\r\n")
            writer.write(head + b"\r\n\r\n")
        while not self.gate.is_set() and len(data) > 1:
            writer.write(data[:1])
            data = data[1:]
            await writer.drain()
            try:
                await asyncio.wait_for(self.gate.wait(), 0.5)
            except TimeoutError:
                pass
        return data

    def release(self) -> None:
        """Let every held request (and any later one) through."""
        self.loop.call_soon_threadsafe(self.gate.set)

    def close(self) -> None:
        async def shut() -> None:
            self.server.close()
            for writer in self.connections:
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def __enter__(self) -> "Proxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
