"""The HTTP policy's additions for tools with several limits and fixed hosts: limiter groups, process-wide
limiters per credential, base URL rebasing, status-only errors, and query strings kept out of debug logs."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from connectors.base import (
    AuthError,
    LimiterGroup,
    RateLimiter,
    RetriableError,
    RetryPolicy,
    SkippableError,
    error_for_status,
    make_session,
    shared_limiter,
)
from sandbox.common import serve


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_group_takes_a_slot_in_every_limiter_at_the_same_moment() -> None:
    clock = FakeClock()
    token = RateLimiter([(2, 10.0)], clock=clock.time, sleep=clock.sleep)
    other_token = RateLimiter([(2, 10.0)], clock=clock.time, sleep=clock.sleep)
    key = RateLimiter([(3, 10.0)], clock=clock.time, sleep=clock.sleep)  # shared by both tokens
    first, second = LimiterGroup([token, key]), LimiterGroup([other_token, key])
    moments = []
    for group in (first, first, second, second, first):
        group.acquire()
        moments.append(clock.now)
    # The key's third slot goes at 0; the fourth call waits for the key (not its own token), the fifth for both.
    assert moments[:3] == [0.0, 0.0, 0.0]
    assert moments[3] == pytest.approx(10.0, abs=0.01)
    assert moments[4] == pytest.approx(10.0, abs=0.01)
    # The slot of the last call was taken in its token's limiter and in the key's at one and the same moment.
    assert token._calls[-1] == key._calls[-1] == moments[4]
    assert second.waited > 0
    with pytest.raises(ValueError):
        LimiterGroup([])


def test_a_credential_has_one_limiter_per_process() -> None:
    assert shared_limiter("trello-key:abc", [(300, 10.0)]) is shared_limiter("trello-key:abc", [(300, 10)])
    assert shared_limiter("trello-key:abc", [(300, 10.0)]) is not shared_limiter("trello-key:def", [(300, 10.0)])
    assert shared_limiter("trello-key:abc", [(300, 10.0)]) is not shared_limiter("trello-key:abc", [(300, 1.0)])


@pytest.mark.parametrize("status, kind", [(429, RetriableError), (503, RetriableError), (401, AuthError),
                                          (404, SkippableError), (400, SkippableError)])
def test_a_bare_status_maps_through_the_one_table(status: int, kind: type) -> None:
    error = error_for_status(status, headers=None, body="x", vendor="trello", where="/1/cards/abc")
    assert type(error) is kind and error.status == status and error.vendor == "trello"


def test_urls_built_on_the_vendor_host_reach_the_configured_one_and_debug_logs_lose_queries(caplog) -> None:
    app = FastAPI()

    @app.get("/1/boards/{board}")
    def board(board: str, request: Request) -> dict[str, str]:
        return {"board": board, "key": request.query_params.get("key", "")}

    caplog.set_level(logging.DEBUG, logger="urllib3")
    with serve(app) as server:
        session = make_session(vendor="trello", policy=RetryPolicy(max_attempts=1),
                               rebase=("https://api.trello.com", server.url))
        answer = session.get("https://api.trello.com/1/boards/abc", params={"key": "a-secret-key"}, timeout=5)
        assert answer.json() == {"board": "abc", "key": "a-secret-key"}
        assert answer.url.startswith(server.url)
        unchanged = make_session(vendor="x", rebase=(server.url, server.url))
        assert unchanged.get(f"{server.url}/1/boards/b", timeout=5).json()["board"] == "b"
    assert "/1/boards/abc" in caplog.text and "a-secret-key" not in caplog.text


def test_a_429_without_retry_after_waits_the_vendor_s_window_when_one_is_given() -> None:
    app = FastAPI()
    answers = {"calls": 0}

    @app.get("/1/cards/{card}")
    def card(card: str) -> Any:
        answers["calls"] += 1
        if answers["calls"] <= 3:  # Trello's 429: no Retry-After
            return JSONResponse({"error": "API_TOKEN_LIMIT_EXCEEDED"}, status_code=429)
        return {"id": card}

    clock = FakeClock()
    with serve(app) as server:
        session = make_session(vendor="trello", policy=RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=60.0),
                               sleep=clock.sleep, retry_after_429=10.5)
        assert session.get(f"{server.url}/1/cards/c1", timeout=5).json() == {"id": "c1"}
        # Three waits of a whole window, where back-off alone would have waited 0.5 + 1 + 2 s inside one window.
        assert clock.now == pytest.approx(31.5)

        answers["calls"] = 0
        clock.now = 0.0
        plain = make_session(vendor="x", policy=RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=60.0, jitter=0),
                             sleep=clock.sleep)
        assert plain.get(f"{server.url}/1/cards/c2", timeout=5).json() == {"id": "c2"}
        assert clock.now == pytest.approx(0.5 + 1 + 2)  # no window given: the policy's back-off, as before

        answers["calls"] = 0
        clock.now = 0.0
        capped = make_session(vendor="trello", policy=RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=2.0),
                              sleep=clock.sleep, retry_after_429=10.5)
        assert capped.get(f"{server.url}/1/cards/c3", timeout=5).json() == {"id": "c3"}
        assert clock.now == pytest.approx(6.0)  # never past the policy's max_delay (2 s a wait)


def test_the_trello_connector_waits_a_whole_token_window_after_a_429() -> None:
    from connectors.trello import TOKEN_LIMIT, WINDOW_MARGIN, TrelloConnector

    connector = TrelloConnector(base_url="http://127.0.0.1:9", api_key="k" * 32, token="t" * 64, boards=["AbCdEfGh"])
    adapter = connector._session.get_adapter("https://api.trello.com/1/")
    assert adapter.retry_after_429 == pytest.approx(TOKEN_LIMIT[1] * WINDOW_MARGIN) and TOKEN_LIMIT[1] >= 10
    connector.close()
