"""What every connector shares: capabilities, typed errors, the one retry policy, rate limiting, paging.

Every HTTP call a connector makes — through a vendor library or directly — goes through a
`requests.Session` built by `make_session`, whose adapter applies the timeout, the client-side rate
limiter, the retry policy and the status-to-error table below. Vendor libraries get that session (or
have their own retries turned off), so there is exactly one retry policy in the process. A library that
does not use requests (the asana SDK talks urllib3) runs each call through `call_with_policy`: the same
limiter, observers, table (`error_for_status`) and retry loop (`run_with_retry`).
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

import requests
from requests.adapters import HTTPAdapter

log = logging.getLogger("backlog_sync.connectors")

DEFAULT_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds; no call is ever made without one


# --------------------------------------------------------------------------------------------------
# Typed errors: the scheduler decides from the type, never from a message.


class ConnectorError(Exception):
    """A failure talking to a tool; the subclasses say what the caller should do."""

    def __init__(
        self, message: str, *, status: int | None = None, vendor: str | None = None, body: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.vendor = vendor
        self.body = body  # the tool's answer, where a caller needs more than the message (Asana's 412 sync token)


class FatalError(ConnectorError):
    """The operator must act (bad config, missing permission); retrying will not help."""


class AuthError(FatalError):
    """401/403: the source is paused and marked as needing new credentials."""


class RetriableError(ConnectorError):
    """429, 5xx, timeouts, dropped connections: try again later, after retry_after seconds if given."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class SkippableError(ConnectorError):
    """One record or one call failed for a reason of its own (404 on one item, 400 on one write)."""


class PaginationLoopError(FatalError):
    """The tool returned a page token it had already returned: stop rather than sync forever."""


class Action(StrEnum):
    RETRY = "retry"
    AUTH = "auth"
    FATAL = "fatal"
    SKIP = "skip"


# One table from status code to action, for every vendor (Airbyte's default_error_mapping).
STATUS_ACTIONS: dict[int, Action] = {
    400: Action.SKIP,
    401: Action.AUTH,
    403: Action.AUTH,
    404: Action.SKIP,
    405: Action.FATAL,
    409: Action.RETRY,
    410: Action.SKIP,
    412: Action.SKIP,  # Asana events: sync token invalid; the connector handles it
    413: Action.SKIP,
    422: Action.SKIP,
    429: Action.RETRY,
    500: Action.RETRY,
    502: Action.RETRY,
    503: Action.RETRY,
    504: Action.RETRY,
}


def action_for(status: int) -> Action | None:
    """Returns what to do about a status code; None for success."""
    if status < 400:
        return None
    if status in STATUS_ACTIONS:
        return STATUS_ACTIONS[status]
    return Action.RETRY if status >= 500 else Action.SKIP


def parse_retry_after(value: str | None) -> float | None:
    """Reads a Retry-After header given as seconds or as an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_for_response(response: requests.Response, vendor: str) -> ConnectorError | None:
    """Turns a finished HTTP response into the typed error it stands for, or None if it succeeded."""
    if action_for(response.status_code) is None:
        return None
    where = f"{response.request.method} {_redact_url(response.url)}" if response.request else response.url
    return error_for_status(response.status_code, headers=response.headers, body=response.text or "",
                            vendor=vendor, where=where)


MAX_ERROR_BODY = 65_536  # how much of an error answer a typed error keeps for its caller


def error_for_status(
    status: int, *, headers: Any, body: str | bytes | None, vendor: str, where: str
) -> ConnectorError | None:
    """Turns (status, headers, body) into the typed error it stands for, or None if it succeeded.

    The one place STATUS_ACTIONS is applied: `error_for_response` (requests) and transports that are not
    requests (the asana SDK's urllib3 client) both come here. `headers` is any mapping with .get().
    """
    action = action_for(status)
    if action is None:
        return None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    snippet = text[:300].replace("\n", " ")
    message = f"{vendor}: HTTP {status} on {_redact_url(where)}: {snippet}"
    kept = text[:MAX_ERROR_BODY]
    if action is Action.RETRY:
        retry_after = parse_retry_after(headers.get("Retry-After") if headers is not None else None)
        return RetriableError(message, retry_after=retry_after, status=status, vendor=vendor, body=kept)
    if action is Action.AUTH:
        return AuthError(message, status=status, vendor=vendor, body=kept)
    if action is Action.FATAL:
        return FatalError(message, status=status, vendor=vendor, body=kept)
    return SkippableError(message, status=status, vendor=vendor, body=kept)


def _redact_url(url: str) -> str:
    """Drops the query string, which for some vendors (Trello) carries the key and token."""
    return url.split("?", 1)[0]


# --------------------------------------------------------------------------------------------------
# The retry policy: one loop, exponential back-off with jitter, Retry-After wins when given.


# The jitter's own generator: drawing from the `random` module's shared one would move the state that other code
# (a test framework replaying its draws, a seeded simulation) relies on, from whatever thread is retrying.
_JITTER = random.Random()


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 60.0
    jitter: float = 0.1  # fraction of the delay added at random, so replicas do not retry in step

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Returns how long to wait before attempt number `attempt + 1` (attempt counts from 1)."""
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        backoff = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return backoff * (1 + _JITTER.uniform(0, self.jitter))


RetryObserver = Callable[[int, float, ConnectorError], None]


def run_with_retry(
    call: Callable[[], Any],
    *,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: RetryObserver | None = None,
) -> Any:
    """Runs `call`, retrying RetriableError under `policy`; any other error passes straight through.

    A Retry-After longer than the policy's max_delay is not waited out here (that would hold a worker and still
    call too early): the error goes to the caller at once, whose next scheduled run comes later (GA4 pauses its
    quota until then)."""
    attempt = 1
    while True:
        try:
            return call()
        except RetriableError as exc:
            if attempt >= policy.max_attempts or (exc.retry_after is not None and exc.retry_after > policy.max_delay):
                raise
            wait = policy.delay(attempt, exc.retry_after)
            if on_retry is not None:
                on_retry(attempt, wait, exc)
            log.debug("retrying after %s (attempt %d, waiting %.2fs)", exc, attempt, wait)
            sleep(wait)
            attempt += 1


# --------------------------------------------------------------------------------------------------
# Client-side rate limiting: sliding windows, several at once (Trello: per token and per key).


class RateLimiter:
    """Blocks until a call fits under every (max_calls, per_seconds) window it was given.

    Thread-safe. Windows are shared by passing the same RateLimiter to every session that uses
    the same credential.
    """

    def __init__(
        self,
        windows: Iterable[tuple[int, float]],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.windows = [(int(n), float(s)) for n, s in windows]
        for n, s in self.windows:
            if n <= 0 or s <= 0:
                raise ValueError(f"a rate window needs positive numbers, got {n} per {s}s")
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self._longest = max((s for _, s in self.windows), default=0.0)
        self.waited = 0.0  # seconds spent waiting, for benchmarks and metrics

    def acquire(self) -> None:
        """Waits for a free slot and takes it."""
        while True:
            with self._lock:
                now = self._clock()
                while self._calls and self._calls[0] <= now - self._longest:
                    self._calls.popleft()
                wait = self._wait_needed(now)
                if wait <= 0:
                    self._calls.append(now)
                    return
            self.waited += wait
            self._sleep(wait)

    def _wait_needed(self, now: float) -> float:
        wait = 0.0
        for max_calls, seconds in self.windows:
            start = now - seconds
            # calls is sorted; count those inside this window from the right
            inside = 0
            oldest_inside = None
            for t in reversed(self._calls):
                if t <= start:
                    break
                inside += 1
                oldest_inside = t
                if inside >= max_calls:
                    break
            if inside >= max_calls and oldest_inside is not None:
                wait = max(wait, oldest_inside + seconds - now + 1e-3)
        return wait


class LimiterGroup:
    """Several RateLimiters a call must fit under at the same moment (Trello: the token's window and the API
    key's, which several tokens share). A slot is taken in all of them at once, so no limiter records a call
    earlier than it is made while another one is still being waited for."""

    def __init__(self, limiters: Iterable[RateLimiter]) -> None:
        self.limiters = sorted(limiters, key=id)  # one lock order for every group: no deadlock
        if not self.limiters:
            raise ValueError("a limiter group needs at least one limiter")
        self.waited = 0.0

    def acquire(self) -> None:
        """Waits until every limiter has a free slot, then takes one in each."""
        first = self.limiters[0]
        while True:
            for limiter in self.limiters:
                limiter._lock.acquire()
            try:
                now = first._clock()
                wait = 0.0
                for limiter in self.limiters:
                    while limiter._calls and limiter._calls[0] <= now - limiter._longest:
                        limiter._calls.popleft()
                    wait = max(wait, limiter._wait_needed(now))
                if wait <= 0:
                    for limiter in self.limiters:
                        limiter._calls.append(now)
                    return
            finally:
                for limiter in reversed(self.limiters):
                    limiter._lock.release()
            self.waited += wait
            first._sleep(wait)


_shared_limiters: dict[str, RateLimiter] = {}
_shared_lock = threading.Lock()


def credential_fingerprint(secret: str) -> str:
    """A stable name for a credential (a limiter's scope, a key of per-token state) that does not hold it."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def shared_limiter(scope: str, windows: Iterable[tuple[int, float]]) -> RateLimiter:
    """The process-wide limiter of one credential: every connector naming the same scope (say, a hash of an
    API key) and windows gets the same RateLimiter, so their calls count against one budget."""
    windows = [(int(n), float(s)) for n, s in windows]
    key = f"{scope}|{windows}"
    with _shared_lock:
        if key not in _shared_limiters:
            _shared_limiters[key] = RateLimiter(windows)
        return _shared_limiters[key]


# --------------------------------------------------------------------------------------------------
# The HTTP session every connector uses.

CallObserver = Callable[[str, int | None, float], None]  # (vendor, status or None on error, seconds)

_observers: list[CallObserver] = []


def observe_calls(observer: CallObserver) -> None:
    """Registers a function told about every HTTP call (metrics); called once at start-up."""
    if observer not in _observers:
        _observers.append(observer)


def notify_call(vendor: str, status: int | None, started: float) -> None:
    """Tells the call observers about one finished HTTP call (status None: no answer came)."""
    elapsed = time.monotonic() - started
    for observer in _observers:
        try:
            observer(vendor, status, elapsed)
        except Exception:  # metrics must never break a sync
            log.exception("call observer failed")


class PolicyAdapter(HTTPAdapter):
    """An HTTPAdapter that applies timeout, rate limit, retry policy and typed errors to every call."""

    def __init__(
        self,
        *,
        vendor: str,
        policy: RetryPolicy,
        limiter: RateLimiter | LimiterGroup | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        raise_for: Callable[[requests.Response], bool] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        pool_maxsize: int = 10,
        rebase: tuple[str, str] | None = None,
        retry_after_429: float | None = None,
    ) -> None:
        super().__init__(max_retries=0, pool_maxsize=pool_maxsize)
        # A vendor that sends 429 without Retry-After but has a known rate window (Trello: 10 s): that wait,
        # capped by the policy's max_delay, instead of back-off steps that could all fall inside one window.
        self.retry_after_429 = retry_after_429
        self.vendor = vendor
        self.policy = policy
        self.limiter = limiter
        # (vendor base, configured base): a library that builds its URLs on a fixed host (py-trello on
        # https://api.trello.com) reaches the configured one (a proxy, the sandbox) through this same adapter.
        self.rebase = rebase if rebase and rebase[0].rstrip("/") != rebase[1].rstrip("/") else None
        self.timeout = timeout
        self.raise_for = raise_for
        self._sleep = sleep
        self.retries = 0  # count of retried calls, for benchmarks and tests

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):  # noqa: ANN001
        # A library may pass timeout=None; we never allow a call without one.
        effective_timeout = timeout if timeout is not None else self.timeout
        if self.rebase is not None and request.url and request.url.startswith(self.rebase[0]):
            request.url = self.rebase[1].rstrip("/") + request.url[len(self.rebase[0].rstrip("/")):]

        def attempt() -> requests.Response:
            if self.limiter is not None:
                self.limiter.acquire()
            started = time.monotonic()
            try:
                response = super(PolicyAdapter, self).send(
                    request, stream=stream, timeout=effective_timeout, verify=verify, cert=cert, proxies=proxies
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                self._notify(None, started)
                raise RetriableError(
                    f"{self.vendor}: {type(exc).__name__} on {request.method} {_redact_url(request.url)}",
                    vendor=self.vendor,
                ) from exc
            self._notify(response.status_code, started)
            if action_for(response.status_code) is Action.RETRY:
                error = error_for_response(response, self.vendor)
                assert isinstance(error, RetriableError)
                response.close()
                if response.status_code == 429 and error.retry_after is None and self.retry_after_429 is not None:
                    error.retry_after = min(self.retry_after_429, self.policy.max_delay)
                raise error
            return response

        def count_retry(_attempt: int, _wait: float, _exc: ConnectorError) -> None:
            self.retries += 1

        response = run_with_retry(attempt, policy=self.policy, sleep=self._sleep, on_retry=count_retry)
        if action_for(response.status_code) is Action.AUTH:
            error = error_for_response(response, self.vendor)
            assert error is not None
            raise error
        return response

    def _notify(self, status: int | None, started: float) -> None:
        notify_call(self.vendor, status, started)


class _DropQueryStrings(logging.Filter):
    """urllib3 logs each request line, query string included, at DEBUG; Trello's key and token travel there."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_url(arg) if isinstance(arg, str) and "?" in arg else arg
                                for arg in record.args)
        return True


_QUERY_FILTER = _DropQueryStrings()


def make_session(
    *,
    vendor: str,
    policy: RetryPolicy | None = None,
    limiter: RateLimiter | LimiterGroup | None = None,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rebase: tuple[str, str] | None = None,
    retry_after_429: float | None = None,
) -> requests.Session:
    """Returns a requests.Session (or equips the one given) with the project's one HTTP policy.

    429, 5xx and connection errors are retried inside the adapter (honouring Retry-After), 401/403
    raise AuthError, and other statuses are returned for the caller to inspect. `rebase=(vendor base,
    configured base)` sends URLs a library built on the vendor's fixed host to the configured one;
    `retry_after_429` is the wait after a 429 that carries no Retry-After (the vendor's rate window).
    """
    session = session if session is not None else requests.Session()
    pool_log = logging.getLogger("urllib3.connectionpool")
    if _QUERY_FILTER not in pool_log.filters:
        pool_log.addFilter(_QUERY_FILTER)
    adapter = PolicyAdapter(
        vendor=vendor, policy=policy or RetryPolicy(), limiter=limiter, timeout=timeout, sleep=sleep,
        rebase=rebase, retry_after_429=retry_after_429,
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@dataclass
class Answer:
    """What a non-requests transport got back from one attempt: status, headers, body (for errors), result."""

    status: int
    headers: Any = None
    body: str | bytes | None = None
    result: Any = None


def call_with_policy(
    send: Callable[[], Answer],
    *,
    vendor: str,
    where: str,
    policy: RetryPolicy,
    limiter: RateLimiter | None = None,
    connection_errors: tuple[type[BaseException], ...] = (),
    sleep: Callable[[float], None] = time.sleep,
    on_retry: RetryObserver | None = None,
) -> Any:
    """The PolicyAdapter's policy for a transport that is not requests (the asana SDK talks urllib3).

    Each attempt waits on the rate limiter, is timed for the call observers, and has its answer turned into a
    typed error by `error_for_status` (STATUS_ACTIONS); 429/5xx and `connection_errors` are retried by
    `run_with_retry` under `policy`, honouring Retry-After. Returns the successful Answer's result; every
    non-2xx status raises. The transport itself must apply the timeout and have no retries of its own.
    """

    def attempt() -> Any:
        if limiter is not None:
            limiter.acquire()
        started = time.monotonic()
        try:
            answer = send()
        except connection_errors as exc:
            notify_call(vendor, None, started)
            raise RetriableError(f"{vendor}: {type(exc).__name__} on {_redact_url(where)}", vendor=vendor) from exc
        notify_call(vendor, answer.status, started)
        error = error_for_status(answer.status, headers=answer.headers, body=answer.body, vendor=vendor, where=where)
        if error is not None:
            raise error
        return answer.result

    return run_with_retry(attempt, policy=policy, sleep=sleep, on_retry=on_retry)


def check_response(response: requests.Response, vendor: str) -> requests.Response:
    """Raises the typed error for a non-2xx response the session handed back, else returns it."""
    error = error_for_response(response, vendor)
    if error is not None:
        raise error
    return response


# --------------------------------------------------------------------------------------------------
# Paging with loop detection (singer-sdk's pagination).


class Paginator:
    """Follows page tokens; the same token twice raises PaginationLoopError instead of looping."""

    def __init__(self, vendor: str, *, max_pages: int = 1_000_000) -> None:
        self.vendor = vendor
        self.token: str | None = None
        self.finished = False
        self.pages = 0
        self.max_pages = max_pages
        self._seen: set[str] = set()

    def advance(self, next_token: str | None) -> None:
        """Records the token for the next page; None (or empty) means the last page was read."""
        self.pages += 1
        if not next_token:
            self.finished = True
            self.token = None
            return
        if next_token in self._seen:
            raise PaginationLoopError(
                f"{self.vendor}: the page token {next_token[:40]!r} came back a second time after "
                f"{self.pages} pages; stopping instead of reading the same pages forever",
                vendor=self.vendor,
            )
        if self.pages >= self.max_pages:
            raise PaginationLoopError(f"{self.vendor}: more than {self.max_pages} pages", vendor=self.vendor)
        self._seen.add(next_token)
        self.token = next_token


def with_last(pages: Iterable[list[Any]]) -> Iterator[tuple[list[Any], bool]]:
    """Yields (page, is it the last one), reading one page ahead, so that a cursor can move with the last page
    only; no pages at all still yields one empty last page."""
    held: list[Any] | None = None
    for page in pages:
        if held is not None:
            yield held, False
        held = page
    yield (held if held is not None else []), True


class FullReadListing:
    """The ids a full read has just seen, for the reconcile that follows it: a full read already lists every
    item in scope, so paging the whole scope a second time for the ids only would double its calls.

    The pull calls begin(), add() for each page and finish() once its last page was read (a read that stops
    early leaves nothing); list_ids() calls take(), which hands the ids over once and only while fresh."""

    def __init__(self, fresh_seconds: float = 60.0) -> None:
        self.fresh_seconds = fresh_seconds
        self._reading: set[str] | None = None
        self._done: tuple[float, set[str]] | None = None

    def begin(self) -> None:
        self._reading, self._done = set(), None

    def add(self, ids: Iterable[str]) -> None:
        if self._reading is not None:
            self._reading.update(ids)

    def finish(self) -> None:
        if self._reading is not None:
            self._done, self._reading = (time.monotonic(), self._reading), None

    def forget(self) -> None:
        self._reading = self._done = None

    def take(self) -> set[str] | None:
        done, self._done = self._done, None
        if done is None or time.monotonic() - done[0] >= self.fresh_seconds:
            return None
        return done[1]


# --------------------------------------------------------------------------------------------------
# Capabilities. A connector declares what it is and implements a few hooks; capabilities that only
# some tools have are separate small interfaces.


@dataclass
class Page:
    """A page of raw, vendor-shaped records and the cursor that is safe to store once they are stored."""

    records: list[dict[str, Any]]
    cursor: str | None  # None: do not move the stored cursor for this page
    deleted_ids: list[str] = field(default_factory=list)  # ids the tool says are gone (events, actions)


@dataclass
class WebhookEvent:
    """One event parsed out of a verified webhook delivery."""

    delivery_id: str  # unique per delivery+event, for once-only processing
    external_id: str | None  # the item the event is about, if any
    kind: str  # e.g. "jira:issue_updated", "updateCard", "changed"
    deleted: bool = False
    changed_fields: list[str] = field(default_factory=list)  # tool field names, for loop detection
    changes: dict[str, Any] = field(default_factory=dict)  # tool field name -> new value, where known


def webhook_payload(body: bytes) -> dict[str, Any]:
    """Reads a webhook body as a JSON object; raises ValueError saying what is wrong with it."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ValueError("body is not a JSON object")
    return payload


@runtime_checkable
class WorkItemSource(Protocol):
    """A tool holding work items (Jira, Trello, Asana)."""

    kind: ClassVar[str]
    primary_key: ClassVar[str]
    replication_key: ClassVar[str]
    page_size: ClassVar[int]

    def describe(self) -> dict[str, Any]:
        """Reads the tool's metadata the mapping needs (custom field names, lists, sections)."""
        ...

    def pull(self, cursor: str | None, *, full: bool = False) -> Iterator[Page]:
        """Yields pages of raw records changed since `cursor` (everything when full or no cursor)."""
        ...

    def fetch(self, external_ids: list[str]) -> list[dict[str, Any]]:
        """Reads the given items by id; ids that no longer exist are left out."""
        ...

    def list_ids(self) -> Iterator[str]:
        """Yields the id of every item currently in scope, for the reconcile that notices deletions."""
        ...

    def update_item(self, external_id: str, payload: dict[str, Any]) -> None:
        """Writes a vendor-shaped field payload (built by mappings) to one item."""
        ...

    def add_comment(self, external_id: str, body: Any) -> None:
        """Adds a comment (vendor-shaped body, built by mappings) to one item."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class ReceivesWebhooks(Protocol):
    """A tool that pushes events to us."""

    def verify_webhook(self, *, headers: dict[str, str], body: bytes, url: str, secret: str | None) -> bool: ...

    def parse_webhook(self, body: bytes) -> list[WebhookEvent]: ...


@runtime_checkable
class RegistersWebhooks(Protocol):
    """A tool whose webhooks we create through its API (Trello: POST /webhooks; Asana: POST /webhooks)."""

    def register_webhook(self, callback_url: str) -> list[str]:
        """Registers `callback_url` for every board/project in scope; returns the ids the tool gave the webhooks.

        Raises a ConnectorError naming the tool's answer when the tool refuses (for Asana, when the handshake
        with the callback did not complete)."""
        ...


@runtime_checkable
class RanksNatively(Protocol):
    """A tool with its own board order we can set (Jira's agile rank)."""

    def rank(self, ordered_ids: list[str]) -> dict[str, str]:
        """Orders the items as given; returns {external_id: error} for the ones that failed."""
        ...


@runtime_checkable
class ReadsComments(Protocol):
    """A tool whose items' latest comments we can read back (Jira, Trello, Asana): the outbox checks them before
    posting again a comment whose send was cut off, so a crash never posts the same comment twice."""

    def recent_comments(self, external_id: str, limit: int) -> list[Any]:
        """Returns the bodies of the item's latest comments (at most `limit`, newest first), as the tool holds
        them (Jira: ADF or wiki text; Trello and Asana: plain text); `mappings.<tool>.comment_text` reads one.
        An item that is gone has none."""
        ...


@dataclass
class MetricRow:
    """One row of a metrics report: the dimension values and typed metric values."""

    dimensions: dict[str, str]
    metrics: dict[str, float | int]
