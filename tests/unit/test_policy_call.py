"""The one HTTP policy for transports that are not requests (call_with_policy): the limiter, the call observers,
STATUS_ACTIONS through error_for_status, retries with Retry-After, connection errors."""

from __future__ import annotations

import pytest

from connectors.base import (
    Answer,
    AuthError,
    RateLimiter,
    RetriableError,
    RetryPolicy,
    SkippableError,
    call_with_policy,
    error_for_status,
    observe_calls,
)


def test_error_for_status_applies_the_one_table() -> None:
    assert error_for_status(200, headers={}, body="", vendor="v", where="GET /x") is None
    retry = error_for_status(429, headers={"Retry-After": "7"}, body=b'{"errors": []}', vendor="v", where="GET /x?k=1")
    assert isinstance(retry, RetriableError) and retry.retry_after == 7 and "?k" not in str(retry)
    assert isinstance(error_for_status(401, headers=None, body=None, vendor="v", where="GET /x"), AuthError)
    skipped = error_for_status(412, headers={}, body='{"sync": "abc"}', vendor="v", where="GET /events")
    assert isinstance(skipped, SkippableError) and skipped.status == 412 and skipped.body == '{"sync": "abc"}'


def test_call_with_policy_retries_honours_retry_after_and_observes() -> None:
    answers = [Answer(503, {}, "down"), Answer(429, {"Retry-After": "2"}, "slow"), Answer(200, {}, None, "ok")]
    waits: list[float] = []
    seen: list[tuple[str, int | None]] = []
    observe_calls(lambda vendor, status, _s: seen.append((vendor, status)) if vendor == "policy-test" else None)
    limiter = RateLimiter([(100, 1.0)])
    result = call_with_policy(lambda: answers.pop(0), vendor="policy-test", where="GET /x",
                              policy=RetryPolicy(base_delay=0.01), limiter=limiter, sleep=waits.append)
    assert result == "ok"
    assert waits[1] == 2  # Retry-After wins over back-off
    assert [s for _, s in seen] == [503, 429, 200]
    assert len(limiter._calls) == 3  # every attempt waited on the limiter


def test_call_with_policy_turns_connection_errors_into_retries_and_gives_up() -> None:
    def send() -> Answer:
        raise ConnectionResetError("reset")

    with pytest.raises(RetriableError, match="ConnectionResetError"):
        call_with_policy(send, vendor="v", where="GET /x", policy=RetryPolicy(max_attempts=3, base_delay=0),
                         connection_errors=(ConnectionResetError,), sleep=lambda _s: None)
    with pytest.raises(AuthError):
        call_with_policy(lambda: Answer(403, {}, "no"), vendor="v", where="GET /x", policy=RetryPolicy())
