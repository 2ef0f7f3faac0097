"""The one HTTP policy: status table, retry loop, Retry-After, rate limiter, paginator loop detection."""

from __future__ import annotations

import random
import time

import pytest
import requests
from fastapi import FastAPI

from connectors.base import (
    Action,
    AuthError,
    FullReadListing,
    PaginationLoopError,
    Paginator,
    RateLimiter,
    RetriableError,
    RetryPolicy,
    SkippableError,
    action_for,
    check_response,
    make_session,
    parse_retry_after,
    run_with_retry,
)
from sandbox.common import SandboxState, install_sandbox_plumbing, serve


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(
    ("status", "action"),
    [(200, None), (204, None), (400, Action.SKIP), (401, Action.AUTH), (403, Action.AUTH), (404, Action.SKIP),
     (429, Action.RETRY), (500, Action.RETRY), (503, Action.RETRY), (599, Action.RETRY), (418, Action.SKIP)],
)
def test_status_table(status: int, action: Action | None) -> None:
    assert action_for(status) == action


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    in_ten = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 10))
    assert 8 <= (parse_retry_after(in_ten) or 0) <= 11


def test_retry_loop_honours_retry_after_then_gives_up() -> None:
    clock = FakeClock()
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RetriableError("busy", retry_after=2.5)
        return "ok"

    assert run_with_retry(flaky, policy=RetryPolicy(max_attempts=5), sleep=clock.sleep) == "ok"
    assert clock.slept == [2.5, 2.5]

    def always() -> None:
        raise RetriableError("down")

    clock.slept.clear()
    with pytest.raises(RetriableError):
        run_with_retry(always, policy=RetryPolicy(max_attempts=4, base_delay=1, jitter=0), sleep=clock.sleep)
    assert clock.slept == [1, 2, 4]  # exponential, three waits for four attempts


def test_retry_loop_hands_a_retry_after_beyond_max_delay_to_the_caller_at_once() -> None:
    clock = FakeClock()
    calls = []

    def quota_spent() -> None:
        calls.append(1)
        raise RetriableError("quota", retry_after=3600)

    with pytest.raises(RetriableError) as caught:
        run_with_retry(quota_spent, policy=RetryPolicy(max_attempts=5, max_delay=60), sleep=clock.sleep)
    assert caught.value.retry_after == 3600
    assert calls == [1] and clock.slept == []  # no attempt wasted waiting a minute at a time


def test_retry_loop_does_not_retry_fatal_errors() -> None:
    calls = []

    def denied() -> None:
        calls.append(1)
        raise AuthError("401")

    with pytest.raises(AuthError):
        run_with_retry(denied, policy=RetryPolicy(), sleep=lambda _s: None)
    assert len(calls) == 1


def test_rate_limiter_keeps_every_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter([(3, 1.0), (5, 10.0)], clock=clock.time, sleep=clock.sleep)
    stamps = []
    for _ in range(12):
        limiter.acquire()
        stamps.append(clock.now)
    for i in range(len(stamps)):
        in_one = [t for t in stamps if stamps[i] - 1.0 < t <= stamps[i]]
        in_ten = [t for t in stamps if stamps[i] - 10.0 < t <= stamps[i]]
        assert len(in_one) <= 3
        assert len(in_ten) <= 5
    assert stamps[-1] >= 20.0  # 12 calls at 5 per 10 s need at least two full windows of waiting


def test_rate_limiter_rejects_nonsense_windows() -> None:
    with pytest.raises(ValueError):
        RateLimiter([(0, 10)])


def test_a_full_read_listing_is_handed_over_once_complete_and_fresh() -> None:
    listing = FullReadListing(fresh_seconds=0.2)
    listing.begin()
    listing.add(["a", "b"])
    assert listing.take() is None  # the read has not finished: its ids are not the whole scope
    listing.add(iter(["c"]))
    listing.finish()
    assert listing.take() == {"a", "b", "c"}
    assert listing.take() is None  # once only: a later reconcile lists the tool again

    listing.begin()
    listing.add(["a"])
    listing.begin()  # a read that stopped early, then a new one: nothing of the first is kept
    listing.finish()
    assert listing.take() == set()

    listing.begin()
    listing.add(["a"])
    listing.finish()
    time.sleep(0.25)
    assert listing.take() is None  # too old to stand for what the tool holds now

    listing.begin()
    listing.add(["a"])
    listing.finish()
    listing.forget()  # an incremental read since: its reconcile must list
    assert listing.take() is None


def test_paginator_detects_a_repeating_token() -> None:
    pages = Paginator("jira")
    pages.advance("a")
    pages.advance("b")
    with pytest.raises(PaginationLoopError, match="came back a second time"):
        pages.advance("a")
    done = Paginator("jira")
    done.advance(None)
    assert done.finished


@pytest.fixture(scope="module")
def toy_server():
    app = FastAPI()
    state = SandboxState()
    install_sandbox_plumbing(app, state)

    @app.get("/thing/{thing_id}")
    def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    with serve(app) as server:
        yield server, state


def test_session_retries_429_with_retry_after_over_http(toy_server) -> None:
    server, state = toy_server
    state.reset_counters()
    state.inject(route="/thing/{thing_id}", status=429, headers={"Retry-After": "0.2"}, times=1)
    state.inject(route="/thing/{thing_id}", status=503, times=1)
    session = make_session(vendor="toy", policy=RetryPolicy(base_delay=0.01))
    started = time.monotonic()
    response = session.get(f"{server.url}/thing/1")
    assert response.json() == {"id": "1"}
    assert time.monotonic() - started >= 0.2
    assert state.hits("GET", "/thing/{thing_id}") == 3
    assert session.get_adapter(server.url).retries == 2


def test_session_raises_auth_error_and_returns_other_failures(toy_server) -> None:
    server, state = toy_server
    state.inject(route="/thing/{thing_id}", status=403, times=1)
    session = make_session(vendor="toy", policy=RetryPolicy(base_delay=0.01))
    with pytest.raises(AuthError, match="HTTP 403"):
        session.get(f"{server.url}/thing/2")
    state.inject(route="/thing/{thing_id}", status=404, times=1)
    response = session.get(f"{server.url}/thing/3?key=secret-key")
    with pytest.raises(SkippableError) as caught:
        check_response(response, "toy")
    assert "secret-key" not in str(caught.value)  # query strings (Trello keys) never reach messages


def test_session_turns_a_dead_server_into_retriable_error() -> None:
    session = make_session(vendor="toy", policy=RetryPolicy(max_attempts=2, base_delay=0.01))
    with pytest.raises(RetriableError, match="ConnectionError"):
        session.get("http://127.0.0.1:9/nothing")


def test_session_never_calls_without_timeout(toy_server) -> None:
    server, state = toy_server
    state.inject(route="/thing/{thing_id}", delay=1.5, times=1)
    session = make_session(vendor="toy", policy=RetryPolicy(max_attempts=1), timeout=(1.0, 0.3))
    with pytest.raises(RetriableError, match="Timeout"):
        session.get(f"{server.url}/thing/4")
    assert isinstance(session, requests.Session)


def test_the_retry_jitter_draws_from_its_own_generator_not_the_random_module() -> None:
    # A retry on some background thread must not move the shared `random` state other code replays or seeds.
    state = random.getstate()
    delays = {RetryPolicy(base_delay=0.5, jitter=0.5).delay(2) for _ in range(50)}
    assert random.getstate() == state
    assert len(delays) > 1 and all(1.0 <= delay <= 1.5 for delay in delays)  # 0.5 x 2, plus up to half of it
