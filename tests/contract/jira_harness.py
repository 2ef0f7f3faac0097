"""The Jira harness of the shared connector contract: the emulated Jira site over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.common import ThreadedServer
from sandbox.jira import DEFAULT_EMAIL, DEFAULT_PAT, DEFAULT_TOKEN, JiraSite, create_app
from tests.contract.harness import Harness, register


@register
class JiraHarness(Harness):
    kind = "jira"
    source_name = "mkt-jira"
    pull_routes = ("POST /rest/api/3/search/jql",)
    write_routes = ("PUT /rest/api/3/issue/{issueIdOrKey}",)
    deployment = "cloud"

    def start(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CONTRACT_JIRA_TOKEN", DEFAULT_TOKEN)
        monkeypatch.setenv("CONTRACT_JIRA_PAT", DEFAULT_PAT)
        self.site = JiraSite(deployment=self.deployment)
        app = create_app(self.site)
        self.state = app.state.sandbox
        self.server = ThreadedServer(app)
        self.site.base_url = self.server.url
        self.server.start()

    def source_config(self) -> dict[str, Any]:
        return {
            "name": self.source_name,
            "kind": "jira",
            "base_url": self.server.url,
            "auth": {"deployment": "cloud", "email": DEFAULT_EMAIL, "token": {"env": "CONTRACT_JIRA_TOKEN"}},
            "jql": "project = MKT",
            "page_size": 10,  # several pages even for the seeded backlog
            "overlap_minutes": 0,
        }

    def expected_items(self) -> int:
        return sum(1 for issue in self.site.issues.values() if issue.project == "MKT")

    def time_passes(self) -> None:
        # JQL dates have minute precision, so a sync re-reads what changed in the minute its window starts.
        # Scheduled runs are minutes apart; the site's clock moves on as it would between them.
        self.site.advance(120)

    def change_an_input(self) -> str:
        issue = self.site.find("MKT-1")
        assert issue is not None
        reach_field = "customfield_10050"
        self.site.set_field("MKT-1", "Reach", (issue.fields.get(reach_field) or 100) * 3)
        return str(issue.id)

    def make_pages_repeat(self) -> None:
        self.state.flags["repeat_page_token"] = True

    def comment_count(self, external_id: str) -> int:
        issue = self.site.find(external_id)
        assert issue is not None
        return len(issue.comments)

    def rate_limit_body(self) -> Any:
        return {"errorMessages": ["Rate limit exceeded."], "errors": {}}


@register
class JiraDataCenterHarness(JiraHarness):
    """Jira Data Center: a personal access token, REST v2, /rest/api/2/search paged by startAt."""

    name = "jira-datacenter"
    pull_routes = ("POST /rest/api/2/search",)
    write_routes = ("PUT /rest/api/2/issue/{issueIdOrKey}",)
    deployment = "datacenter"

    def source_config(self) -> dict[str, Any]:
        config = super().source_config()
        config["auth"] = {"deployment": "datacenter", "token": {"env": "CONTRACT_JIRA_PAT"}}
        return config
