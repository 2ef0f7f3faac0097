"""The Trello harness of the shared connector contract: the emulated Trello over real HTTP, the English board
read in pages of five cards so that paging by `before` is exercised.

One board: an incremental sync reads each board's actions with one call, and the contract bounds a resumed
sync at two reads (the actions, then the changed card). Several boards, the French one and Trello's rate
limits at their real 10 s windows are covered by tests/contract/test_trello_connector.py. Here both sides
run Trello's limits (100 per token, 300 per key) on 1 s windows, so the suite does not sit out real windows.
"""

from __future__ import annotations

from typing import Any

import pytest

import connectors.trello as trello_connector
from sandbox.common import ThreadedServer
from sandbox.trello import DEFAULT_KEY, DEFAULT_TOKEN, TrelloSite, create_app
from tests.contract.harness import Harness, register

COMPRESSED_TOKEN_LIMIT = (100, 1.0)
COMPRESSED_KEY_LIMIT = (300, 1.0)


@register
class TrelloHarness(Harness):
    kind = "trello"
    source_name = "mkt-trello"
    pull_routes = ("GET /1/boards/{id}/cards", "GET /1/boards/{boardId}/actions", "GET /1/cards/{id}", "GET /1/batch")
    write_routes = ("PUT /1/cards/{idCard}/customFields",)

    def start(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CONTRACT_TRELLO_KEY", DEFAULT_KEY)
        monkeypatch.setenv("CONTRACT_TRELLO_TOKEN", DEFAULT_TOKEN)
        monkeypatch.setattr(trello_connector, "TOKEN_LIMIT", COMPRESSED_TOKEN_LIMIT)
        monkeypatch.setattr(trello_connector, "KEY_LIMIT", COMPRESSED_KEY_LIMIT)
        self.site = TrelloSite(token_limit=COMPRESSED_TOKEN_LIMIT, key_limit=COMPRESSED_KEY_LIMIT)
        app = create_app(self.site)
        self.state = app.state.sandbox
        self.server = ThreadedServer(app).start()

    def scripted_routes(self) -> list[str]:
        # A full sync pages boards; single cards (GET /1/cards/{id}, or ten at a time through GET /1/batch) are
        # read by incremental syncs and webhook refreshes: the resume contract and test_trello_connector.py.
        return [route for route in super().scripted_routes() if route not in ("GET /1/cards/{id}", "GET /1/batch")]

    def source_config(self) -> dict[str, Any]:
        return {
            "name": self.source_name,
            "kind": "trello",
            "base_url": self.server.url,
            "api_key": {"env": "CONTRACT_TRELLO_KEY"},
            "token": {"env": "CONTRACT_TRELLO_TOKEN"},
            "boards": [self.site.board_named("Marketing backlog").short_link],
            "page_size": 5,  # several pages even for the seeded boards
        }

    def expected_items(self) -> int:
        return sum(1 for card in self.site.board_named("Marketing backlog").cards.values() if not card.closed)

    def change_an_input(self) -> str:
        board = self.site.board_named("Marketing backlog")
        card = next(c for c in board.cards.values() if c.name.startswith("Optimise title tags"))
        reach = float(self.site.value_of(card.id, "Reach") or 100)
        self.site.user_sets_field(card.id, "Reach", reach * 3)
        return card.id

    def make_pages_repeat(self) -> None:
        self.state.flags["repeat_page"] = True

    def comment_count(self, external_id: str) -> int:
        return sum(1 for comment in self.site.comments if comment["card"] == external_id)

    def rate_limit_body(self) -> Any:
        return {"error": "API_TOKEN_LIMIT_EXCEEDED", "message": "Rate limit exceeded"}
