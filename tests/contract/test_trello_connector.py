"""Trello specifics beyond the shared contract, against the emulated Trello over real HTTP with py-trello:
paging past 1,000 cards, several boards, incremental sync noticing moved/archived/deleted cards, the reconcile,
Trello's rate limits (at the real 10 s windows, and 429s without Retry-After), secrets kept out of messages,
custom fields created only on request, card positions, comments, and webhook registration."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI, Response
from sqlalchemy import select
from typer.testing import CliRunner

import connectors.trello as trello_connector
from connectors.base import AuthError, ReadsComments, RetryPolicy, SkippableError
from connectors.trello import TrelloConnector
from sandbox.common import ThreadedServer, serve
from sandbox.trello import DEFAULT_KEY, DEFAULT_TOKEN, TrelloSite, create_app
from sandbox.trello_data import SeedBoard, SeedCard
from service.cli import app as cli
from service.config import AppConfig
from service.db import session_scope
from service.outbox import OutboxWorker
from service.sync import SyncService
from service.tables import ItemRow, OutboxRow

FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.5)
COMPRESSED = (100, 1.0), (300, 1.0)


@pytest.fixture
def trello(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TrelloSite, ThreadedServer]]:
    monkeypatch.setenv("T_KEY", DEFAULT_KEY)
    monkeypatch.setenv("T_TOKEN", DEFAULT_TOKEN)
    site = TrelloSite()
    app = create_app(site)
    server = ThreadedServer(app).start()
    server.counters = app.state.sandbox  # type: ignore[attr-defined]
    yield site, server
    server.stop()


def compress_time(monkeypatch: pytest.MonkeyPatch, site: TrelloSite) -> None:
    """Trello's limits on 1 s windows on both sides, for tests that make many calls quickly."""
    monkeypatch.setattr(trello_connector, "TOKEN_LIMIT", COMPRESSED[0])
    monkeypatch.setattr(trello_connector, "KEY_LIMIT", COMPRESSED[1])
    site.set_limits(*COMPRESSED)


def connector(server: ThreadedServer, boards: list[str], **kw: Any) -> TrelloConnector:
    return TrelloConnector(base_url=server.url, api_key=DEFAULT_KEY, token=DEFAULT_TOKEN, boards=boards,
                           policy=kw.pop("policy", FAST), **kw)


def service(engine, server: ThreadedServer, boards: list[str], **source: Any) -> SyncService:
    config = AppConfig.model_validate({"sources": [{
        "name": "mkt", "kind": "trello", "base_url": server.url, "api_key": {"env": "T_KEY"},
        "token": {"env": "T_TOKEN"}, "boards": boards, **source}]})
    return SyncService(engine=engine, config=config, policy=FAST)


def stored(engine) -> dict[str, ItemRow]:
    with session_scope(engine) as db:
        rows = list(db.execute(select(ItemRow)).scalars())
        for row in rows:
            db.expunge(row)
        return {row.external_id: row for row in rows}


def test_a_board_of_more_than_1000_cards_is_paged_not_truncated(trello, monkeypatch) -> None:
    site, server = trello
    compress_time(monkeypatch, site)
    board = site.board_named("Marketing backlog")
    site.generate(2345)
    client = connector(server, [board.short_link])
    pages = list(client.pull(None, full=True))
    ids = [card["id"] for page in pages for card in page.records]
    assert len(ids) == len(set(ids)) == len(board.cards) == 2345 + 12
    assert server.counters.hits("GET", "/1/boards/{id}/cards") == 3
    assert [len(page.records) for page in pages] == [1000, 1000, 357]
    assert pages[0].cursor is None and pages[-1].cursor is not None  # the cursor moves with the last page
    assert all("customFieldItems" in card for page in pages for card in page.records)
    assert sorted(client.list_ids()) == sorted(ids)


def test_incremental_sync_notices_moved_archived_and_deleted_cards(trello, engine, monkeypatch) -> None:
    site, server = trello
    compress_time(monkeypatch, site)
    en, fr = site.board_named("Marketing backlog"), site.board_named("Backlog marketing")
    elsewhere = site.add_board(SeedBoard("Sales board", "SaLeSbRd", ["To Do"], [], [],
                                         [SeedCard("Not ours", "To Do")]))
    sync = service(engine, server, [en.short_link, fr.id])
    first = sync.run("mkt", mode="full")
    assert first.status == "succeeded", first.error
    assert len(stored(engine)) == len(en.cards) + len(fr.cards)
    assert elsewhere.id not in {row.container for row in stored(engine).values()}

    cards = sorted(en.cards.values(), key=lambda c: c.id)
    moved_list, archived, deleted, to_fr, away = cards[:5]
    site.user_moves_card(moved_list.id, "Done")
    site.archive(archived.id)
    site.delete(deleted.id)
    site.move_to_board(to_fr.id, fr.id)
    site.move_to_board(away.id, elsewhere.id)
    result = sync.run("mkt")
    assert result.status == "succeeded", result.error
    rows = stored(engine)
    assert rows[moved_list.id].status == "done" and rows[moved_list.id].raw_status == "Done"
    assert archived.id not in rows and deleted.id not in rows and away.id not in rows
    assert rows[to_fr.id].container == fr.id and rows[to_fr.id].raw_status == "Idées"
    assert result.items_seen == 2  # the moved-list card and the card that came to the French board
    # The five changed cards of the English board were read in one batch call, not five.
    assert server.counters.hits("GET", "/1/batch") == 1

    # A card archived without our seeing its action (say, the cursor was reset) goes at the reconcile.
    site.cards[cards[6].id].closed = True
    assert sync.run("mkt", mode="reconcile").items_removed >= 1
    assert cards[6].id not in stored(engine)
    sync.close()


def test_a_card_moved_to_another_board_keeps_its_item_when_many_cards_changed(trello, engine, monkeypatch) -> None:
    site, server = trello
    compress_time(monkeypatch, site)
    en, fr = site.board_named("Marketing backlog"), site.board_named("Backlog marketing")
    site.generate(70)
    sync = service(engine, server, [fr.id, en.id])  # the French board is read first
    assert sync.run("mkt", mode="full").status == "succeeded"
    cards = sorted(en.cards.values(), key=lambda c: c.id)
    moved, others = cards[0], cards[1:60]
    site.move_to_board(moved.id, fr.id)
    for card in others:  # with the moved card, 60 changed cards on the English board: it is paged
        site.user_sets_field(card.id, "Reach", 4321)
    result = sync.run("mkt")
    assert result.status == "succeeded", result.error
    rows = stored(engine)
    assert moved.id in rows and rows[moved.id].container == fr.id
    sync.close()

    # Boards the other way round: the English board's paged read finds the card on the French board.
    site.move_to_board(moved.id, en.id)
    sync = service(engine, server, [fr.id, en.id])
    assert sync.run("mkt").status == "succeeded"
    other = cards[60]
    site.move_to_board(other.id, fr.id)
    for card in others:
        site.user_sets_field(card.id, "Reach", 1234)
    sync.close()
    reversed_sync = service(engine, server, [en.id, fr.id])
    result = reversed_sync.run("mkt")
    assert result.status == "succeeded", result.error
    rows = stored(engine)
    assert other.id in rows and rows[other.id].container == fr.id
    reversed_sync.close()


def test_cards_are_read_ten_a_call_and_missing_ones_left_out(trello, monkeypatch) -> None:
    site, server = trello
    compress_time(monkeypatch, site)
    board = site.board_named("Marketing backlog")
    ids = sorted(board.cards)
    site.delete(ids[0])
    site.archive(ids[1])
    client = connector(server, [board.id])
    client.describe()
    before = server.counters.hits("GET", "/1/batch")
    found = client.fetch([*ids, "not-a-card-id!", "0" * 24])
    assert sorted(card["id"] for card in found) == ids[2:]
    assert all("customFieldItems" in card for card in found)
    assert server.counters.hits("GET", "/1/batch") - before == 2  # 13 well-formed ids: 10 + 3


def test_a_card_on_a_board_the_token_cannot_see_is_left_out_while_a_dead_token_still_pauses(
        trello, monkeypatch) -> None:
    site, server = trello
    compress_time(monkeypatch, site)
    en = site.board_named("Marketing backlog")
    hidden = site.add_board(SeedBoard("Private board", "PrIvAtEb", ["To Do"], [], [], [SeedCard("Secret", "To Do")]))
    site.hidden_boards.add(hidden.id)
    secret = next(iter(hidden.cards))
    client = connector(server, [en.id])
    ours = sorted(en.cards)[:3]
    assert client.fetch([secret]) == []  # alone: GET /1/cards/{id} answers 401, the token works
    assert sorted(card["id"] for card in client.fetch([secret, *ours])) == ours  # in a /1/batch
    assert server.counters.hits("GET", "/1/members/me") == 2

    site.token = "a-revoked-token-0123456789"  # every call, the check included, now answers 401
    for ids in ([secret], [secret, *ours]):
        with pytest.raises(AuthError):
            client.fetch(ids)


def test_limits_hold_at_trello_s_real_10_second_windows(trello) -> None:
    site, server = trello  # Trello's windows, unchanged: 100 per token and 300 per key per 10 s
    board = site.board_named("Marketing backlog")
    client = connector(server, [board.id])
    card_ids = list(board.cards)
    for number in range(130):
        assert client.fetch([card_ids[number % len(card_ids)]])
    assert site.violations == {}  # no 429 at all
    assert client.limiter.waited > 5  # the 101st call waited for the window to move on


def test_a_429_without_retry_after_backs_off_then_succeeds(trello, monkeypatch) -> None:
    site, server = trello
    compress_time(monkeypatch, site)
    site.set_limits((3, 1.0), (300, 1.0))  # the server is stricter than the client believes
    board = site.board_named("Marketing backlog")
    client = connector(server, [board.id], policy=RetryPolicy(max_attempts=6, base_delay=0.3, max_delay=2.0))
    for card_id in list(board.cards)[:8]:
        assert client.fetch([card_id])[0]["id"] == card_id
    assert site.violations["API_TOKEN_LIMIT_EXCEEDED"] >= 1
    adapter = client._session.get_adapter("https://api.trello.com/1/")
    assert adapter.retries >= 1


def test_key_and_token_never_reach_messages_or_logs(trello, caplog) -> None:
    site, server = trello
    caplog.set_level(logging.DEBUG)
    board = site.board_named("Marketing backlog")
    with pytest.raises(SkippableError) as missing:
        connector(server, [board.id])._json(f"/cards/{'0' * 24}/customFields", method="PUT",
                                            body={"customFieldItems": [{"idCustomField": "x", "value": ""}]})
    wrong = TrelloConnector(base_url=server.url, api_key=DEFAULT_KEY, token="a-wrong-token-0123456789",
                            boards=[board.id], policy=FAST)
    with pytest.raises(AuthError) as refused:
        wrong.describe()
    for text in (str(missing.value), str(refused.value), caplog.text):
        assert DEFAULT_KEY not in text and DEFAULT_TOKEN not in text and "a-wrong-token" not in text


def test_a_board_the_token_cannot_read_pauses_the_source_naming_it(trello, engine) -> None:
    _, server = trello
    sync = service(engine, server, ["NoSuchBd"])
    result = sync.run("mkt", mode="full")
    assert result.status == "failed" and "'NoSuchBd'" in (result.error or "") and "paused" in (result.error or "")
    sync.close()


def test_missing_owned_fields_are_created_only_on_request(trello, engine, monkeypatch) -> None:
    site, server = trello
    compress_time(monkeypatch, site)
    fr = site.board_named("Backlog marketing")
    fr.custom_fields = [f for f in fr.custom_fields if f["name"] not in ("Marketing score", "Marketing rank")]
    for card in fr.cards.values():
        card.items = {k: v for k, v in card.items.items() if k in {f["id"] for f in fr.custom_fields}}

    plain = service(engine, server, [fr.id])
    assert plain.run("mkt", mode="full").status == "succeeded"
    failed = OutboxWorker(engine=engine, sync_service=plain).drain()
    assert failed.sent == 0 and failed.failed > 0
    assert "'Marketing score'" in failed.errors[0] and "create_missing_fields" in failed.errors[0]
    assert {f["name"] for f in fr.custom_fields}.isdisjoint({"Marketing score", "Marketing rank"})
    plain.close()

    asked = service(engine, server, [fr.id], write_back={"create_missing_fields": True})
    assert asked.run("mkt", mode="full").status == "succeeded"
    assert {"Marketing score", "Marketing rank"} <= {f["name"] for f in fr.custom_fields}
    drained = OutboxWorker(engine=engine, sync_service=asked).drain()
    assert drained.failed == 0 and drained.sent > 0, drained.errors
    asked.close()


def test_positions_follow_the_rank_and_comments_go_through_the_outbox(trello, engine, monkeypatch) -> None:
    site, server = trello
    compress_time(monkeypatch, site)
    en = site.board_named("Marketing backlog")
    sync = service(engine, server, [en.id], set_position=True)
    assert sync.run("mkt", mode="full").status == "succeeded"
    assert OutboxWorker(engine=engine, sync_service=sync).drain().failed == 0
    rows = stored(engine)
    ranked = sorted((r for r in rows.values() if r.rank is not None), key=lambda r: r.rank)
    assert [site.cards[r.external_id].pos for r in ranked] == [r.rank * 16384 for r in ranked]
    assert all(site.value_of(r.external_id, "Marketing rank") == str(r.rank) for r in ranked)
    edits = len(site.edits)
    again = sync.run("mkt", mode="full")
    assert again.writes_planned == 0 and len(site.edits) == edits

    with session_scope(engine) as db:
        db.add(OutboxRow(source="mkt", external_id=ranked[0].external_id, field="comment",
                         value="Résultat KPI : 80 % de l'objectif 🎯"))
    assert OutboxWorker(engine=engine, sync_service=sync).drain().sent == 1
    assert site.comments == [{"card": ranked[0].external_id, "text": "Résultat KPI : 80 % de l'objectif 🎯"}]
    sync.close()


def test_recent_comments_are_the_card_s_comment_actions_newest_first(trello) -> None:
    site, server = trello
    board = site.board_named("Marketing backlog")
    card = next(iter(board.cards.values()))
    other = next(c for c in board.cards.values() if c.id != card.id)
    trello = connector(server, [board.id])
    assert isinstance(trello, ReadsComments)
    for text in ("KPI result 1", "Résultat KPI : 80 % 🎯"):
        trello.add_comment(card.id, {"text": text})
    trello.add_comment(other.id, {"text": "on another card"})
    site.user_sets_field(card.id, "Reach", 777)  # not a comment
    before = server.counters.counters["GET /1/cards/{id}/actions"]
    assert trello.recent_comments(card.id, 5) == ["Résultat KPI : 80 % 🎯", "KPI result 1"]
    assert trello.recent_comments(card.short_link, 1) == ["Résultat KPI : 80 % 🎯"]
    assert server.counters.counters["GET /1/cards/{id}/actions"] - before == 2  # one call each
    assert trello.recent_comments("f" * 24, 5) == []  # a card that is gone has none
    assert trello.recent_comments("../boards", 5) == []  # not a card id: never sent


def test_webhooks_register_creates_one_per_board_after_trello_s_head_check(
        trello, tmp_path: Path, monkeypatch) -> None:
    site, server = trello
    receiver = FastAPI()
    receiver.add_api_route("/webhooks/trello/mkt", lambda: Response(status_code=200), methods=["HEAD"])
    monkeypatch.setenv("T_SECRET", site.app_secret)
    config = tmp_path / "config.yaml"
    boards = [b.short_link for b in site.boards.values()]
    with serve(receiver) as daemon:
        url = f"{daemon.url}/webhooks/trello/mkt"
        source = {"kind": "trello", "base_url": server.url, "api_key": {"env": "T_KEY"}, "token": {"env": "T_TOKEN"},
                  "boards": boards, "webhook_secret": {"env": "T_SECRET"}}
        config.write_text(yaml.safe_dump({"sources": [{"name": "mkt", **source, "webhook_url": url},
                                                      {"name": "lost", **source, "webhook_url": url + "/nope"}]}))
        # Without --url the source's webhook_url is registered: the URL the daemon verifies signatures against.
        result = CliRunner().invoke(cli, ["webhooks", "register", "--source", "mkt", "-c", str(config)])
        assert result.exit_code == 0, result.output
        assert result.output.count("registered trello webhook") == 2
        assert {hook["idModel"] for hook in site.webhooks} == set(site.boards)
        assert all(hook["callbackURL"] == url for hook in site.webhooks)
        refused = CliRunner().invoke(cli, ["webhooks", "register", "--source", "lost", "-c", str(config)])
        assert refused.exit_code == 1 and "did not return 200" in refused.output
    assert DEFAULT_TOKEN not in result.output + refused.output
