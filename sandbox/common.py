"""What every emulated tool shares: a real HTTP server on 127.0.0.1, per-route request counters and
scripted fault injection, controllable in-process or over HTTP under /_sandbox/."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import re
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import Match


@dataclass
class Fault:
    """One scripted misbehaviour for requests whose route matches `route` (a route template or "*")."""

    route: str = "*"
    method: str = "*"
    status: int | None = None  # answer with this status instead of the real response
    body: Any = None  # JSON body for the faulty answer (str is sent as raw text: malformed JSON)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (slow responses, timeouts)
    times: int = 1  # how many matching requests it applies to; -1 for every one
    reset_connection: bool = False  # drop the connection without an answer

    def matches(self, method: str, route: str) -> bool:
        return (self.route in ("*", route)) and (self.method in ("*", method))


class SandboxState:
    """Counters and faults for one emulated tool. Thread-safe: the server and tests share it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: Counter[str] = Counter()  # "GET /rest/api/3/search/jql" -> hits
        self.statuses: Counter[str] = Counter()  # "429" -> responses sent with that status
        self.faults: list[Fault] = []
        self.flags: dict[str, Any] = {}  # tool-specific switches (e.g. "repeat_page_token")

    def count(self, method: str, route: str) -> None:
        with self._lock:
            self.counters[f"{method} {route}"] += 1

    def count_status(self, status: int) -> None:
        with self._lock:
            self.statuses[str(status)] += 1

    def inject(self, fault: Fault | None = None, **kw: Any) -> Fault:
        """Adds a fault; keywords build one (inject(route="/x", status=429, headers={...}))."""
        fault = fault or Fault(**kw)
        with self._lock:
            self.faults.append(fault)
        return fault

    def take_reset(self, method: str, path: str) -> bool:
        """Socket level: takes a reset_connection fault matching a raw request path, if one is due."""
        with self._lock:
            for fault in self.faults:
                if fault.reset_connection and fault.times != 0 and fault.method in ("*", method) and (
                        fault.route == "*" or re.fullmatch(re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(fault.route)),
                                                           path)):
                    if fault.times > 0:
                        fault.times -= 1
                    self.counters[f"{method} {fault.route}"] += 1
                    return True
            return False

    def take_fault(self, method: str, route: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.reset_connection:
                    continue  # dropped at the socket, before the app sees the request (ThreadedServer)
                if fault.matches(method, route) and fault.times != 0:
                    if fault.times > 0:
                        fault.times -= 1
                    return fault
            self.faults = [f for f in self.faults if f.times != 0]
            return None

    def hits(self, method: str, route: str) -> int:
        with self._lock:
            return self.counters[f"{method} {route}"]

    def reset_counters(self) -> None:
        with self._lock:
            self.counters.clear()
            self.statuses.clear()

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()
            self.flags.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"counters": dict(self.counters), "statuses": dict(self.statuses), "flags": dict(self.flags)}


def route_template(app: FastAPI, request: Request) -> str:
    """Returns the matched route's path template ("/rest/api/3/issue/{issueIdOrKey}") or the raw path."""
    for route in app.router.routes:
        match, _ = route.matches(request.scope)
        if match is Match.FULL:
            return getattr(route, "path", request.url.path)
    return request.url.path


def install_sandbox_plumbing(app: FastAPI, state: SandboxState) -> None:
    """Adds counting and fault injection middleware plus the /_sandbox control routes to an app."""

    @app.middleware("http")
    async def count_and_inject(request: Request, call_next):  # noqa: ANN202
        if request.url.path.startswith("/_sandbox"):
            return await call_next(request)
        route = route_template(app, request)
        state.count(request.method, route)
        fault = state.take_fault(request.method, route)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status is not None:
                state.count_status(fault.status)
                if isinstance(fault.body, str):
                    return Response(fault.body, status_code=fault.status, headers=fault.headers,
                                    media_type="application/json")
                return JSONResponse(fault.body if fault.body is not None else {"error": "injected fault"},
                                    status_code=fault.status, headers=fault.headers)
        response = await call_next(request)
        state.count_status(response.status_code)
        return response

    @app.get("/_sandbox/counters", include_in_schema=False)
    def counters() -> dict[str, Any]:
        return state.snapshot()

    @app.post("/_sandbox/faults", include_in_schema=False)
    async def add_fault(request: Request) -> dict[str, Any]:
        body = await request.json()
        state.inject(Fault(**body))
        return {"ok": True}

    @app.post("/_sandbox/flags", include_in_schema=False)
    async def set_flags(request: Request) -> dict[str, Any]:
        state.flags.update(await request.json())
        return {"ok": True, "flags": state.flags}

    @app.post("/_sandbox/reset", include_in_schema=False)
    def reset() -> dict[str, Any]:
        state.reset_counters()
        state.clear_faults()
        return {"ok": True}


def free_port() -> int:
    """Returns a free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _resetting_protocol(state: SandboxState) -> type:
    """uvicorn's HTTP protocol, able to drop a connection with a TCP reset before answering (a real
    'connection reset by peer' for the client, which an app-level fault cannot produce)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Protocol
    except ImportError:  # httptools is not installed: the pure-Python parser
        from uvicorn.protocols.http.h11_impl import H11Protocol as Protocol

    class ResettingProtocol(Protocol):
        def data_received(self, data: bytes) -> None:
            line = data.split(b"\r\n", 1)[0].decode("latin-1", "replace").split(" ")
            if len(line) >= 2 and state.take_reset(line[0], line[1].split("?", 1)[0]):
                sock = self.transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.transport.abort()
                return
            super().data_received(data)

    return ResettingProtocol


class ThreadedServer:
    """Runs an ASGI app under uvicorn in a background thread on 127.0.0.1 (httpx's test pattern)."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        state = getattr(getattr(app, "state", None), "sandbox", None)
        extra = {"http": _resetting_protocol(state)} if isinstance(state, SandboxState) else {}
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, lifespan="on", **extra)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"sandbox-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"sandbox server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextlib.contextmanager
def serve(app: Any, port: int | None = None) -> Iterator[ThreadedServer]:
    """Serves an app for the duration of a with-block and yields the running server."""
    server = ThreadedServer(app, port).start()
    try:
        yield server
    finally:
        server.stop()


class SlidingWindow:
    """Counts accepted requests of one credential in the last `seconds` (a vendor's rolling rate limit)."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit, self.seconds = limit, seconds
        self.calls: deque[float] = deque()

    def admit(self, now: float) -> bool:
        self._expire(now)
        if len(self.calls) >= self.limit:
            return False
        self.calls.append(now)
        return True

    def retry_after(self, now: float) -> float:
        """Seconds until the oldest counted request leaves the window (0 when there is room)."""
        self._expire(now)
        if len(self.calls) < self.limit or not self.calls:
            return 0.0
        return max(0.0, self.calls[0] + self.seconds - now)

    def _expire(self, now: float) -> None:
        while self.calls and self.calls[0] <= now - self.seconds:
            self.calls.popleft()


_Delivery = TypeVar("_Delivery")


class WebhookSender(Generic[_Delivery]):
    """Delivers queued webhooks in order on one background thread, after the request that caused them has
    answered (as the vendors do); each emulator keeps its own signing and body format in `deliver`."""

    def __init__(self, name: str, deliver: Callable[[_Delivery], None]) -> None:
        self._name = name
        self._deliver = deliver
        self._queue: queue.Queue[_Delivery] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def send(self, delivery: _Delivery) -> None:
        self._queue.put(delivery)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            delivery = self._queue.get()
            try:
                self._deliver(delivery)
            finally:
                self._queue.task_done()

    def wait(self, timeout: float = 10.0) -> None:
        """Blocks until every queued webhook was delivered, or `timeout` seconds passed (tests)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
