"""A TCP proxy that breaks the link it carries on command: for tests of what a role does when the
network between it and another misbehaves.

``with FaultProxy(("127.0.0.3", 7020)) as proxy`` listens on a free port of 127.0.0.1 (or the
address given) and forwards every connection to the target, both ways, byte for byte. While it
runs, the test may

- ``delay(s)``: hold every chunk ``s`` seconds after it was read before writing it on (0: none);
- ``drop()``: cut every current connection at once (both ends see a reset); new ones go through;
- ``partition(s)``: cut every current connection and refuse new ones (accepted, then reset) for
  ``s`` seconds (None: until ``heal()``);
- ``partition(s, stall=True)``: keep the connections but forward nothing either way, and leave new
  ones silent (not connected on to the target), as a black hole does, for ``s`` seconds;
- ``heal()``: end a partition at once.

Bounded: each connection holds at most ``max_chunks`` chunks of at most ``chunk_size`` bytes per
direction; past that it stops reading, and TCP's own flow control holds the sender. The proxy runs
an asyncio loop on its own thread; the commands are thread-safe and return once applied. ``close()``
(the context's exit) resets every connection, stops listening and joins the thread.
"""

from __future__ import annotations

import asyncio
import threading

START_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 10.0


class _Link:
    """One client connection and its connection to the target: two pumps, one per direction."""

    def __init__(self, client: asyncio.StreamWriter):
        self.client = client
        self.target: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task] = []

    def abort(self) -> None:
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        for writer in (self.client, self.target):
            if writer is not None:
                writer.transport.abort()  # a reset, as a broken network shows itself


class FaultProxy:
    """A fault-injecting TCP forwarder to ``target`` (host, port), listening on ``host``:``port``
    (0: a free port); see the module docstring."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1", port: int = 0,
                 chunk_size: int = 65536, max_chunks: int = 16):
        self.target, self.host = target, host
        self.chunk_size, self.max_chunks = chunk_size, max_chunks
        self.port = port
        self.accepted = 0  # connections accepted so far, refused ones included
        self._delay = 0.0
        self._refusing = False
        self._links: set[_Link] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flowing: asyncio.Event | None = None
        self._stopped: asyncio.Event | None = None
        self._heal_timer: asyncio.TimerHandle | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"fault-proxy-{target[1]}", daemon=True)

    # -- the test's side ---------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """Where to connect instead of the target: ``tcp://host:port``."""
        return f"tcp://{self.host}:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._started.wait(START_TIMEOUT_S):
            raise TimeoutError(f"the proxy to {self.target} did not start in {START_TIMEOUT_S} s")
        if self._error is not None:
            raise self._error
        return self

    def delay(self, seconds: float) -> None:
        """Hold each chunk ``seconds`` after it was read before forwarding it (0: forward at once)."""
        self._call(self._set_delay, seconds)

    def drop(self) -> None:
        """Reset every current connection (new ones go through)."""
        self._call(self._drop)

    def partition(self, seconds: float | None = None, stall: bool = False) -> None:
        """Cut the link for ``seconds`` (None: until ``heal()``): reset connections and refuse new ones,
        or with ``stall`` keep them and forward nothing."""
        self._call(self._partition, seconds, stall)

    def heal(self) -> None:
        """End a partition: forward again and accept connections again."""
        self._call(self._heal)

    @property
    def running(self) -> bool:
        """Whether the proxy's thread still runs (it ends with ``close()``)."""
        return self._thread.is_alive()

    @property
    def partitioned(self) -> bool:
        return self._refusing or (self._flowing is not None and not self._flowing.is_set())

    def close(self) -> None:
        """Reset every connection, stop listening and join the thread."""
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(COMMAND_TIMEOUT_S)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, function, *args) -> None:
        async def apply():
            function(*args)

        asyncio.run_coroutine_threadsafe(apply(), self._loop).result(COMMAND_TIMEOUT_S)

    # -- the proxy's thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:  # reported by start(), which waits for it
            self._error = e
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._flowing, self._stopped = asyncio.Event(), asyncio.Event()
        self._flowing.set()
        server = await asyncio.start_server(self._accept, self.host, self.port, backlog=128)
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        try:
            await self._stopped.wait()
        finally:
            server.close()
            self._drop()
            await server.wait_closed()

    def _set_delay(self, seconds: float) -> None:
        self._delay = max(0.0, seconds)

    def _drop(self) -> None:
        for link in list(self._links):
            link.abort()
        self._links.clear()

    def _partition(self, seconds: float | None, stall: bool) -> None:
        if stall:
            self._flowing.clear()
        else:
            self._refusing = True
            self._drop()
        if self._heal_timer is not None:
            self._heal_timer.cancel()
        self._heal_timer = self._loop.call_later(seconds, self._heal) if seconds is not None else None

    def _heal(self) -> None:
        self._refusing = False
        self._flowing.set()
        if self._heal_timer is not None:
            self._heal_timer.cancel()
            self._heal_timer = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._refusing:
            writer.transport.abort()
            return
        link = _Link(writer)
        self._links.add(link)
        try:
            await self._flowing.wait()  # a stalled link leaves a new connection silent
            if self._refusing or link not in self._links:
                link.abort()
                return
            try:
                target_reader, link.target = await asyncio.open_connection(*self.target)
            except OSError:  # the target is down: the client sees a reset, as it would without the proxy
                link.abort()
                return
            link.tasks = [asyncio.create_task(self._pump(reader, link.target, link)),
                          asyncio.create_task(self._pump(target_reader, writer, link))]
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            link.abort()
            self._links.discard(link)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link) -> None:
        """Forward one direction through a bounded queue; the end of either direction ends the link."""
        queue: asyncio.Queue = asyncio.Queue(self.max_chunks)
        reading = asyncio.create_task(self._read(source, queue))
        try:
            while (item := await queue.get()) is not None:
                read_at, data = item
                await self._flowing.wait()
                wait = read_at + self._delay - self._loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                    await self._flowing.wait()  # a partition that began meanwhile holds the chunk too
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            reading.cancel()
            link.abort()

    async def _read(self, source: asyncio.StreamReader, queue: asyncio.Queue) -> None:
        try:
            while data := await source.read(self.chunk_size):
                await queue.put((self._loop.time(), data))
        except (ConnectionError, OSError):
            pass
        await queue.put(None)
