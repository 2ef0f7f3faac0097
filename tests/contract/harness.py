"""Per-tool harnesses for the shared connector contract: each starts its sandbox over real HTTP and knows
how to script it (faults, a user's edit) and which routes count as pulls and writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from connectors.base import RetryPolicy
from sandbox.common import SandboxState, ThreadedServer
from service.config import AppConfig
from service.sync import SyncService

FAST_RETRIES = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.5)


class Harness:
    """What the contract suite needs from one tool's sandbox."""

    kind: str
    source_name: str
    pull_routes: tuple[str, ...]  # "METHOD /template" of the calls that read items
    write_routes: tuple[str, ...]  # "METHOD /template" of the calls that write our fields
    server: ThreadedServer
    state: SandboxState

    def start(self, monkeypatch: pytest.MonkeyPatch) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.server.stop()

    def source_config(self) -> dict[str, Any]:
        raise NotImplementedError

    def expected_items(self) -> int:
        raise NotImplementedError

    def scripted_routes(self) -> list[str]:
        return [*self.pull_routes, *self.write_routes]

    def time_passes(self) -> None:
        """Lets the tool's clock move on, as it does between scheduled runs (tools with coarse cursors)."""

    def change_an_input(self) -> str:
        """Makes a user's edit that changes one item's score; returns its external id."""
        raise NotImplementedError

    def make_pages_repeat(self) -> None:
        raise NotImplementedError

    def comment_count(self, external_id: str) -> int:
        """How many comments the item holds in the tool, counted by the sandbox."""
        raise NotImplementedError

    def rate_limit_body(self) -> Any:
        return {"error": "rate limited"}

    def inject_on_pull(self, *, status: int, headers: dict[str, str] | None = None, body: Any = None,
                       times: int = 1) -> None:
        method, route = self.pull_routes[0].split(" ", 1)
        self.state.inject(route=route, method=method, status=status, headers=headers or {}, body=body, times=times)

    def pull_calls(self) -> int:
        counters = self.state.snapshot()["counters"]
        return sum(counters.get(route, 0) for route in self.pull_routes)

    def write_calls(self) -> int:
        counters = self.state.snapshot()["counters"]
        return sum(counters.get(route, 0) for route in self.write_routes)


HARNESSES: dict[str, type[Harness]] = {}


def register(cls: type[Harness]) -> type[Harness]:
    HARNESSES[getattr(cls, "name", cls.kind)] = cls
    return cls


@dataclass
class ServiceUnderTest:
    engine: Engine
    config: AppConfig
    sync: SyncService

    @classmethod
    def build(cls, engine: Engine, harness: Harness) -> ServiceUnderTest:
        config = AppConfig.model_validate({"sources": [harness.source_config()]})
        return cls(engine=engine, config=config, sync=SyncService(engine=engine, config=config, policy=FAST_RETRIES))

    def close(self) -> None:
        self.sync.close()
