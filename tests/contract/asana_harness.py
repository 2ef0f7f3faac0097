"""The Asana harness of the shared connector contract: the emulated Asana workspace over real HTTP, with its
English and French marketing projects."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.asana import DEFAULT_TOKEN, AsanaWorkspace, create_app
from sandbox.asana_data import EN_PROJECT, FR_PROJECT
from sandbox.common import ThreadedServer
from tests.contract.harness import Harness, register


@register
class AsanaHarness(Harness):
    kind = "asana"
    source_name = "mkt-asana"
    # Items are read by the project listing (full, reconcile) and one by one (changes named by the events API).
    pull_routes = ("GET /projects/{project_gid}/tasks", "GET /tasks/{task_gid}")
    write_routes = ("PUT /tasks/{task_gid}",)

    def start(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CONTRACT_ASANA_TOKEN", DEFAULT_TOKEN)
        self.workspace = AsanaWorkspace(requests_per_minute=1500)
        self.workspace.generate(230)  # Asana pages hold at most 100 tasks: the English project takes three pages
        app = create_app(self.workspace)
        self.state = app.state.sandbox
        self.server = ThreadedServer(app)
        self.workspace.base_url = self.server.url
        self.server.start()

    def source_config(self) -> dict[str, Any]:
        return {
            "name": self.source_name,
            "kind": "asana",
            "base_url": self.server.url,
            "token": {"env": "CONTRACT_ASANA_TOKEN"},
            "projects": [EN_PROJECT, FR_PROJECT],
            "plan": "paid",
        }

    def expected_items(self) -> int:
        return len(self.workspace.tasks)

    def scripted_routes(self) -> list[str]:
        # A full sync: metadata, a sync token per project (GET /events), the listing, then the writes.
        return ["GET /projects/{project_gid}/tasks", *self.write_routes, "GET /events", "GET /projects/{project_gid}",
                "GET /projects/{project_gid}/custom_field_settings"]

    def change_an_input(self) -> str:
        gid = "1203000000000001"
        reach = self.workspace.tasks[gid].custom_fields[self.workspace.field_gid("Reach")]
        self.workspace.set_field(gid, "Reach", reach * 3)
        return gid

    def make_pages_repeat(self) -> None:
        self.state.flags["repeat_page_token"] = True

    def comment_count(self, external_id: str) -> int:
        stories = self.workspace.tasks[external_id].stories
        return sum(1 for story in stories if story["resource_subtype"] == "comment_added")

    def rate_limit_body(self) -> Any:
        return {"errors": [{"message": "You've made too many requests and hit a rate limit. Please retry after "
                                       "the given amount of time."}]}
