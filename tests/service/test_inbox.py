"""The webhook inbox on the real app and the emulated Jira: a verified delivery is stored and acknowledged before
it is processed, a duplicate is stored and processed once, a burst for one issue is one fetch, every Jira event
kind reaches the backlog, and the webhooks our own writes cause (echoes) cause no refresh and no write."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from connectors.jira_webhooks import sign
from sandbox.common import SandboxState, ThreadedServer
from sandbox.jira import DEFAULT_EMAIL, DEFAULT_TOKEN, JiraSite
from sandbox.jira import create_app as create_jira
from sandbox.jira_data import SeedIssue
from service.api import create_app
from service.config import AppConfig, Settings
from service.db import session_scope
from service.inbox import InboxWorker
from service.outbox import OutboxWorker
from service.tables import InboxRow, ItemRow, OutboxRow, WriteLogRow
from tests.specs import JIRA_EXAMPLES

SECRET = "inbox-test-webhook-secret"
ADMIN = "inbox-test-admin-token-1234567890"
REACH = "customfield_10050"
SCORE = "customfield_10070"
RANK = "customfield_10071"
SEARCH = ("POST", "/rest/api/3/search/jql")
EDIT = ("PUT", "/rest/api/3/issue/{issueIdOrKey}")
CAPTURES = JIRA_EXAMPLES


@dataclass
class Stack:
    site: JiraSite
    jira: SandboxState  # the emulated Jira's request counters
    engine: Engine
    inbox: InboxWorker
    hook_url: str
    debounce: float
    http: httpx.Client

    def searches(self) -> int:
        return self.jira.hits(*SEARCH)

    def edits(self) -> int:
        return self.jira.hits(*EDIT)

    def deliver(self, body: dict[str, Any] | bytes, *, identifier: str | None = None) -> httpx.Response:
        """Posts a delivery signed as Jira signs it, with Jira's delivery id header when one is given."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "X-Hub-Signature": sign(SECRET, raw)}
        if identifier is not None:
            headers["X-Atlassian-Webhook-Identifier"] = identifier
        return self.http.post(self.hook_url, content=raw, headers=headers)

    def process(self) -> int:
        """Lets the debounce window pass, then processes one batch of due deliveries (the worker's step).

        One batch, not "until none is due": the webhooks our own writes cause arrive meanwhile, and they are
        looked at separately."""
        time.sleep(self.debounce + 0.05)
        return self.inbox.process_due()

    def hook_site(self) -> None:
        """Makes the emulated Jira send its own signed webhooks to the daemon (after the initial sync)."""
        self.site.register_webhook(self.hook_url, secret=SECRET)


def _start(engine: Engine, monkeypatch: pytest.MonkeyPatch, debounce: float) -> Iterator[Stack]:
    monkeypatch.setenv("INBOX_JIRA_TOKEN", DEFAULT_TOKEN)
    monkeypatch.setenv("INBOX_JIRA_SECRET", SECRET)
    site = JiraSite()
    jira_app = create_jira(site)
    jira = ThreadedServer(jira_app)
    site.base_url = jira.url
    jira.start()
    config = AppConfig.model_validate({
        "webhook_debounce_seconds": debounce,
        "sources": [{
            "name": "mkt", "kind": "jira", "base_url": jira.url, "jql": "project = MKT",
            "auth": {"email": DEFAULT_EMAIL, "token": {"env": "INBOX_JIRA_TOKEN"}},
            "schedule": {"interval_seconds": 3600},
            "webhook_secret": {"env": "INBOX_JIRA_SECRET"},
        }],
    })
    app = create_app(settings=Settings(admin_token=ADMIN), config=config, engine=engine, start_scheduler=False)
    sync = app.state.sync
    # The backlog as a first sync leaves it: every issue read, scored, and our scores and ranks written.
    assert sync.run("mkt", mode="full", trigger="cli").status == "succeeded"
    assert OutboxWorker(engine=engine, sync_service=sync).drain().failed == 0
    daemon = ThreadedServer(app).start()
    try:
        with httpx.Client(timeout=10) as http:
            yield Stack(site=site, jira=jira_app.state.sandbox, engine=engine, inbox=app.state.daemon.inbox,
                        hook_url=f"{daemon.url}/webhooks/jira/mkt", debounce=debounce, http=http)
    finally:
        site.wait_for_webhooks()
        daemon.stop()
        jira.stop()


@pytest.fixture
def stack(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    yield from _start(engine, monkeypatch, debounce=0.2)


@pytest.fixture
def burst_stack(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A debounce window (2 s) wide enough for a burst of 20 deliveries sent one after another."""
    yield from _start(engine, monkeypatch, debounce=2.0)


# --- helpers ---------------------------------------------------------------------------------------


def capture(name: str) -> dict[str, Any]:
    return json.loads((CAPTURES / name).read_text(encoding="utf-8"))


def issue_body(event: str, issue_id: int, key: str, *, changes: list[dict[str, Any]] | None = None,
               timestamp: int | None = None, changelog_id: str | None = None) -> dict[str, Any]:
    """A Jira issue event built from the captured jira:issue_updated delivery, naming a sandbox issue."""
    body = copy.deepcopy(capture("webhook_jira_issue_updated_status.json"))
    body["webhookEvent"] = event
    body["timestamp"] = timestamp if timestamp is not None else int(time.time() * 1000)
    body["issue"]["id"] = str(issue_id)
    body["issue"]["key"] = key
    body["issue"]["self"] = f"https://example.atlassian.net/rest/api/2/issue/{issue_id}"
    if changes is None:
        body.pop("changelog", None)
    else:
        body["changelog"] = {"id": changelog_id or str(uuid.uuid4().int % 10**6), "items": changes}
    return body


def change(field_id: str, name: str, before: Any, after: Any, *, with_id: bool = True) -> dict[str, Any]:
    """One changelog item as Jira sends it (fieldId is left out to name the field by its name only)."""
    item = {"field": name, "fieldtype": "custom", "from": None, "fromString": None if before is None else str(before),
            "to": None, "toString": None if after is None else str(after)}
    if with_id:
        item["fieldId"] = field_id
    return item


def inbox_rows(engine: Engine) -> list[InboxRow]:
    with session_scope(engine) as db:
        rows = list(db.execute(select(InboxRow).order_by(InboxRow.id)).scalars())
        for row in rows:
            db.expunge(row)
        return rows


def item(engine: Engine, key: str) -> ItemRow | None:
    with session_scope(engine) as db:
        row = db.execute(select(ItemRow).where(ItemRow.source == "mkt", ItemRow.key == key)).scalar_one_or_none()
        if row is not None:
            db.expunge(row)
        return row


def desired(engine: Engine) -> dict[str, dict[str, Any]]:
    """What we want each issue's owned fields to hold: {external id: {"score": ..., "rank": ...}}."""
    with session_scope(engine) as db:
        return {external_id: {"score": None if score is None else round(score, 2), "rank": rank}
                for external_id, score, rank in db.execute(
                    select(ItemRow.external_id, ItemRow.score, ItemRow.rank).where(ItemRow.source == "mkt"))}


def last_outbox_id(engine: Engine) -> int:
    with session_scope(engine) as db:
        return int(db.scalar(select(func.max(OutboxRow.id))) or 0)


def outbox_since(engine: Engine, after_id: int) -> list[tuple[str, str, Any, str]]:
    with session_scope(engine) as db:
        return [tuple(row) for row in db.execute(
            select(OutboxRow.external_id, OutboxRow.field, OutboxRow.value, OutboxRow.status)
            .where(OutboxRow.id > after_id).order_by(OutboxRow.id)).all()]


def written(engine: Engine, external_id: str, field: str) -> list[Any]:
    with session_scope(engine) as db:
        return list(db.execute(select(WriteLogRow.value).where(
            WriteLogRow.source == "mkt", WriteLogRow.external_id == external_id, WriteLogRow.field == field,
        ).order_by(WriteLogRow.id)).scalars())


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def issue_of(site: JiraSite, key: str) -> Any:
    found = site.find(key)
    assert found is not None, key
    return found


# --- 1. persisted and acknowledged before processing -----------------------------------------------


def test_a_verified_delivery_is_stored_then_acknowledged_before_it_is_processed(stack: Stack) -> None:
    assert stack.inbox._thread is None  # no worker runs: whatever the 200 means, it cannot be "processed"
    issue = issue_of(stack.site, "MKT-4")
    body = json.dumps(issue_body("jira:issue_updated", issue.id, issue.key,
                                 changes=[change(REACH, "Reach", 8000, 9000)])).encode()
    searches = stack.searches()
    sent_at = datetime.now(UTC)

    response = stack.deliver(body, identifier="delivery-0001")
    assert response.status_code == 200
    assert response.json() == {"stored": True}

    [row] = inbox_rows(stack.engine)
    assert (row.source, row.delivery_id, row.body) == ("mkt", "delivery-0001", body.decode())
    assert sent_at.timestamp() - 1 <= aware(row.received_at).timestamp() <= datetime.now(UTC).timestamp() + 1
    assert (row.status, row.attempts, row.processed_at, row.outcome) == ("pending", 0, None, None)
    assert stack.searches() == searches  # nothing was read from Jira to answer the delivery

    assert stack.process() == 1
    [row] = inbox_rows(stack.engine)
    assert (row.status, row.attempts) == ("done", 1)
    assert row.processed_at is not None and aware(row.processed_at) >= aware(row.received_at)
    assert stack.searches() == searches + 1


# --- 2. a duplicate is stored and processed once ----------------------------------------------------


def test_the_same_delivery_id_twice_is_stored_and_processed_once(stack: Stack) -> None:
    issue = issue_of(stack.site, "MKT-4")
    first = issue_body("jira:issue_updated", issue.id, issue.key, changes=[change(REACH, "Reach", 8000, 9000)])
    retried = {**first, "timestamp": first["timestamp"] + 5000}  # Jira's retry may differ; its identifier does not
    searches = stack.searches()

    assert stack.deliver(first, identifier="same-delivery").json() == {"stored": True}
    second = stack.deliver(retried, identifier="same-delivery")
    assert second.status_code == 200 and second.json() == {"stored": False}
    assert len(inbox_rows(stack.engine)) == 1

    assert stack.process() == 1
    assert stack.searches() == searches + 1
    # Redelivered after it was processed: still nothing new to store or to do.
    assert stack.deliver(first, identifier="same-delivery").json() == {"stored": False}
    assert stack.process() == 0
    assert stack.searches() == searches + 1
    [row] = inbox_rows(stack.engine)
    assert (row.status, row.attempts) == ("done", 1)


def test_the_same_body_without_a_delivery_id_is_stored_and_processed_once(stack: Stack) -> None:
    issue = issue_of(stack.site, "MKT-4")
    body = json.dumps(issue_body("jira:issue_updated", issue.id, issue.key, timestamp=1767225600000,
                                 changelog_id="48213", changes=[change(REACH, "Reach", 8000, 9000)])).encode()
    searches = stack.searches()

    assert stack.deliver(body).json() == {"stored": True}
    assert stack.deliver(body).json() == {"stored": False}
    [row] = inbox_rows(stack.engine)
    assert row.delivery_id == f"jira:issue_updated:{issue.id}:1767225600000:48213"

    assert stack.process() == 1
    assert stack.deliver(body).json() == {"stored": False}
    assert stack.process() == 0
    assert stack.searches() == searches + 1
    assert [(r.status, r.attempts) for r in inbox_rows(stack.engine)] == [("done", 1)]


# --- 3. a burst is one fetch -------------------------------------------------------------------------


def test_a_burst_for_one_issue_is_fetched_once(burst_stack: Stack) -> None:
    stack = burst_stack
    issue = issue_of(stack.site, "MKT-6")
    reach = issue.fields[REACH]
    searches = stack.searches()
    started = time.monotonic()
    for n in range(1, 21):  # a user nudging Reach up twenty times
        stack.site.set_field("MKT-6", "Reach", reach + n, notify=False)
        body = issue_body("jira:issue_updated", issue.id, issue.key,
                          changes=[change(REACH, "Reach", reach + n - 1, reach + n)])
        assert stack.deliver(body, identifier=f"burst-{n}").json() == {"stored": True}
    assert time.monotonic() - started < stack.debounce, "the burst did not fit in the debounce window"
    assert stack.inbox.process_due() == 0  # still inside the window: nothing is due yet
    assert stack.searches() == searches

    assert stack.process() == 20
    assert stack.searches() == searches + 1  # one fetch for the whole burst
    rows = inbox_rows(stack.engine)
    assert len(rows) == 20 and {row.status for row in rows} == {"done"}
    refreshed = item(stack.engine, "MKT-6")
    assert refreshed is not None and refreshed.inputs["reach"] == pytest.approx(reach + 20)


def test_a_burst_for_one_issue_is_fetched_once_by_the_running_worker(burst_stack: Stack) -> None:
    stack = burst_stack
    issue = issue_of(stack.site, "MKT-6")
    reach = issue.fields[REACH]
    searches = stack.searches()
    stack.inbox.start()
    try:
        started = time.monotonic()
        for n in range(1, 21):
            stack.site.set_field("MKT-6", "Reach", reach + n, notify=False)
            body = issue_body("jira:issue_updated", issue.id, issue.key,
                              changes=[change(REACH, "Reach", reach + n - 1, reach + n)])
            assert stack.deliver(body, identifier=f"burst-{n}").json() == {"stored": True}
            time.sleep(0.02)  # a user's quick edits, not one request
        assert time.monotonic() - started < stack.debounce, "the burst did not fit in the debounce window"
        deadline = time.monotonic() + 20
        while {row.status for row in inbox_rows(stack.engine)} != {"done"} and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stack.inbox.stop()
    assert {row.status for row in inbox_rows(stack.engine)} == {"done"}
    refreshed = item(stack.engine, "MKT-6")
    assert refreshed is not None and refreshed.inputs["reach"] == pytest.approx(reach + 20)
    assert stack.searches() == searches + 1


# --- 4. Jira's events reach the backlog --------------------------------------------------------------


def test_an_issue_created_in_jira_joins_the_backlog_scored_and_written_back(stack: Stack) -> None:
    new = stack.site.add_issue(SeedIssue(
        key_number=90, project="MKT", issue_type="Campaign", status="Backlog",
        summary="Webinar series for the autumn launch", description="",
        inputs={"Reach": 30000, "Impact": 3, "Confidence": 80, "Effort": 1}), when=stack.site.now())
    assert item(stack.engine, new.key) is None
    searches = stack.searches()

    assert stack.deliver(issue_body("jira:issue_created", new.id, new.key), identifier="created-1").status_code == 200
    assert stack.process() == 1

    assert stack.searches() == searches + 1
    row = item(stack.engine, new.key)
    assert row is not None and row.external_id == str(new.id)
    assert row.title == "Webinar series for the autumn launch"
    assert row.score is not None and row.rank == 1  # by far the best value for its effort
    # The score and rank went back to Jira in the same pass.
    assert new.fields[SCORE] == pytest.approx(row.score, abs=0.005)
    assert new.fields[RANK] == 1


def test_a_users_edit_in_jira_is_refreshed_rescored_and_its_echoes_ignored(stack: Stack) -> None:
    stack.hook_site()
    issue = issue_of(stack.site, "MKT-2")
    before = item(stack.engine, "MKT-2")
    assert before is not None and before.score is not None
    searches = stack.searches()

    stack.site.set_field("MKT-2", "Reach", issue.fields[REACH] * 10)  # the emulated Jira sends the webhook
    stack.site.wait_for_webhooks()
    [row] = inbox_rows(stack.engine)
    assert row.status == "pending"
    assert stack.process() == 1

    assert stack.searches() == searches + 1
    after = item(stack.engine, "MKT-2")
    assert after is not None
    assert after.inputs["reach"] == pytest.approx(issue.fields[REACH])
    assert after.score == pytest.approx(before.score * 10)
    assert issue.fields[SCORE] == pytest.approx(after.score, abs=0.005)  # written back

    # Our writes (MKT-2's score, the ranks that moved) came back as webhooks: no refresh, no write.
    stack.site.wait_for_webhooks()
    echoes = inbox_rows(stack.engine)[1:]
    assert echoes, "our writes caused no webhook"
    searches, edits = stack.searches(), stack.edits()
    assert stack.process() == len(echoes)
    assert (stack.searches(), stack.edits()) == (searches, edits)
    assert stack.inbox.stats.echoes_ignored == len(echoes)
    stack.site.wait_for_webhooks()
    assert len(inbox_rows(stack.engine)) == 1 + len(echoes)  # and so nothing more came back


def test_an_issue_deleted_in_jira_leaves_the_backlog(stack: Stack) -> None:
    stack.hook_site()
    gone = issue_of(stack.site, "MKT-7")
    assert item(stack.engine, "MKT-7") is not None
    searches = stack.searches()

    assert stack.site.delete("MKT-7")
    stack.site.wait_for_webhooks()
    assert stack.process() == 1

    assert item(stack.engine, "MKT-7") is None
    assert stack.searches() == searches  # a deletion needs no read
    ranks = sorted(r["rank"] for r in desired(stack.engine).values() if r["rank"] is not None)
    assert ranks == list(range(1, len(ranks) + 1))  # the others closed the gap
    assert [r.status for r in inbox_rows(stack.engine)][0] == "done"
    assert str(gone.id) not in desired(stack.engine)


def test_a_comment_refreshes_its_issue(stack: Stack) -> None:
    issue = issue_of(stack.site, "MKT-4")
    stale = item(stack.engine, "MKT-4")
    assert stale is not None
    # An edit Jira sent no webhook for; the comment's webhook makes us read the issue again.
    stack.site.set_field("MKT-4", "Reach", issue.fields[REACH] * 2, notify=False)
    body = copy.deepcopy(capture("webhook_comment_created.json"))
    body["issue"]["id"], body["issue"]["key"] = str(issue.id), issue.key
    searches = stack.searches()

    assert stack.deliver(body, identifier="comment-1").json() == {"stored": True}
    assert stack.process() == 1

    assert stack.searches() == searches + 1
    fresh = item(stack.engine, "MKT-4")
    assert fresh is not None and fresh.inputs["reach"] == pytest.approx(issue.fields[REACH])
    assert fresh.score == pytest.approx(stale.score * 2)
    assert issue.fields[SCORE] == pytest.approx(fresh.score, abs=0.005)


# --- 5. no loops ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("by_id", [True, False], ids=["by-field-id", "by-field-name"])
def test_an_echo_of_our_own_write_causes_no_refresh_and_no_write(stack: Stack, by_id: bool) -> None:
    issue = issue_of(stack.site, "MKT-2")
    ours = desired(stack.engine)[str(issue.id)]
    assert written(stack.engine, str(issue.id), "score")[-1] == pytest.approx(ours["score"])
    assert written(stack.engine, str(issue.id), "rank")[-1] == ours["rank"]
    echo = issue_body("jira:issue_updated", issue.id, issue.key, changes=[
        change(SCORE, "Marketing score", None, ours["score"], with_id=by_id),
        change(RANK, "Marketing rank", None, ours["rank"], with_id=by_id),
    ])
    searches, edits, outbox = stack.searches(), stack.edits(), last_outbox_id(stack.engine)

    assert stack.deliver(echo, identifier="echo-1").json() == {"stored": True}
    assert stack.process() == 1

    assert (stack.searches(), stack.edits()) == (searches, edits)
    assert outbox_since(stack.engine, outbox) == []
    [row] = inbox_rows(stack.engine)
    assert row.status == "done" and "ignored 1 echoes" in (row.outcome or "")


def test_our_field_set_by_hand_to_another_value_is_corrected(stack: Stack) -> None:
    issue = issue_of(stack.site, "MKT-2")
    ours = desired(stack.engine)[str(issue.id)]
    stack.site.set_field("MKT-2", "Marketing score", 1.0, notify=False)  # a user typed over our score
    body = issue_body("jira:issue_updated", issue.id, issue.key,
                      changes=[change(SCORE, "Marketing score", ours["score"], 1.0)])
    searches = stack.searches()

    assert stack.deliver(body, identifier="overwrite-1").json() == {"stored": True}
    assert stack.process() == 1

    assert stack.searches() == searches + 1  # not an echo: the value is not one we wrote
    assert issue.fields[SCORE] == pytest.approx(ours["score"], abs=0.005)  # and it was put back


@pytest.mark.parametrize("factor", [5, 1], ids=["reach-changed", "reach-unchanged"])
def test_a_users_change_mixed_with_ours_is_processed_and_writes_only_what_changed(stack: Stack, factor: int) -> None:
    issue = issue_of(stack.site, "MKT-4")
    before = desired(stack.engine)
    held_before = {i.id: {SCORE: i.fields.get(SCORE), RANK: i.fields.get(RANK)} for i in stack.site.issues.values()}
    reach = issue.fields[REACH]
    stack.site.set_field("MKT-4", "Reach", reach * factor, notify=False)
    mixed = issue_body("jira:issue_updated", issue.id, issue.key, changes=[
        change(REACH, "Reach", reach, reach * factor),
        change(SCORE, "Marketing score", None, before[str(issue.id)]["score"]),  # ours, as we wrote it
    ])
    searches, outbox, edits_seen = stack.searches(), last_outbox_id(stack.engine), len(stack.site.edits)

    assert stack.deliver(mixed, identifier="mixed-1").json() == {"stored": True}
    assert stack.process() == 1

    assert stack.searches() == searches + 1  # one refresh
    after = desired(stack.engine)
    really_changed = {(external_id, name) for external_id, values in after.items() for name, value in values.items()
                      if before[external_id][name] != value}
    if factor == 1:
        assert really_changed == set()
    else:
        assert (str(issue.id), "score") in really_changed
    planned = outbox_since(stack.engine, outbox)
    assert {(external_id, name) for external_id, name, _, _ in planned} == really_changed
    assert all(status == "sent" for *_, status in planned)
    edits = stack.site.edits[edits_seen:]
    assert {str(issue_of(stack.site, e["issue"]).id) for e in edits} == {external_id for external_id, _ in
                                                                         really_changed}
    for edit in edits:
        target = issue_of(stack.site, edit["issue"])
        for field_id, value in edit["fields"].items():
            assert value != held_before[target.id][field_id], f"{edit['issue']} {field_id} written unchanged"
            logical = "score" if field_id == SCORE else "rank"
            assert value == pytest.approx(after[str(target.id)][logical])
