"""The emulated Trello answers as Trello's published OpenAPI spec says (../shared/specs/trello.json), with the
relaxations where real Trello answers differ from its own spec (SOURCES.md lists them, from 2016 captures)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
import requests
from openapi_schema_validator import OAS30Validator

from sandbox.common import ThreadedServer, serve
from sandbox.trello import DEFAULT_KEY, DEFAULT_TOKEN, TrelloSite, create_app
from tests.specs import spec_path

AUTH = {"key": DEFAULT_KEY, "token": DEFAULT_TOKEN}


@cache
def spec() -> dict[str, Any]:
    document = json.loads(spec_path("trello.json").read_text())
    relaxed = copy.deepcopy(document)
    schemas = relaxed["components"]["schemas"]
    card = schemas["Card"]["properties"]
    # Real cards carry label objects in `labels` (the spec says ids): captured in board_cards_list.json.
    card["labels"] = {"type": "array", "items": {"oneOf": [{"$ref": "#/components/schemas/Label"},
                                                           {"$ref": "#/components/schemas/TrelloID"}]}}
    # Real cards answer null for descData and idAttachmentCover (the spec says neither is nullable), and ""
    # for idAttachmentCover on some cards (the TrelloID pattern refuses it): both in the same capture.
    card["descData"] = {**card["descData"], "nullable": True}
    card["idAttachmentCover"] = {"type": "string", "nullable": True, "pattern": "^([0-9a-fA-F]{24})?$"}
    # checkItemStates items are objects ({"idCheckItem", "state"}) in the capture, strings in the spec.
    card["checkItemStates"] = {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "object"}]}}
    # A board's idOrganization is null for a personal board (the webhook capture shows it); the spec's
    # TrelloID has no null.
    board = schemas["Board"]["properties"]
    if "idOrganization" in board:
        board["idOrganization"] = {"type": "string", "nullable": True}
    if "descData" in board:
        board["descData"] = {**board["descData"], "nullable": True}
    # A member without an avatar has "avatarHash": null in actions (webhook_updateCard_moved_list.json).
    creator = schemas["Action"]["properties"].get("memberCreator", {}).get("properties", {})
    if "avatarHash" in creator:
        creator["avatarHash"] = {**creator["avatarHash"], "nullable": True}
    return relaxed


def schema(name: str, *, array: bool = False) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{name}"}
    return {**({"type": "array", "items": ref} if array else ref), "components": spec()["components"]}


def response_schema(path: str, method: str) -> dict[str, Any]:
    content = spec()["paths"][path][method]["responses"]["200"].get("content") or {}
    found = content.get("application/json", {}).get("schema")
    assert found is not None, f"{method.upper()} {path} has no JSON schema in trello.json"
    return {**found, "components": spec()["components"]}


def check(instance: Any, against: dict[str, Any]) -> None:
    errors = sorted(OAS30Validator(against).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message[:300]}" for e in errors[:5])


@pytest.fixture
def trello() -> Iterator[tuple[str, TrelloSite]]:
    site = TrelloSite()
    server = ThreadedServer(create_app(site)).start()
    yield server.url, site
    server.stop()


def get(url: str, path: str, **params: Any) -> requests.Response:
    response = requests.get(url + path, params={**AUTH, **params}, timeout=10)
    assert response.status_code == 200, response.text
    return response


def test_board_metadata_follows_the_spec(trello) -> None:
    url, site = trello
    board = site.board_named("Backlog marketing")
    check(get(url, f"/1/boards/{board.short_link}").json(), response_schema("/boards/{id}", "get"))
    check(get(url, f"/1/boards/{board.id}/lists", filter="all").json(), response_schema("/boards/{id}/lists", "get"))
    check(get(url, f"/1/boards/{board.id}/customFields").json(),
          response_schema("/boards/{id}/customFields", "get"))
    # labels and members have no response schema in the spec: each item is checked against its component.
    check(get(url, f"/1/boards/{board.id}/labels", limit=1000).json(), schema("Label", array=True))
    check(get(url, f"/1/boards/{board.id}/members").json(), schema("Member", array=True))


def test_cards_actions_and_custom_field_items_follow_the_spec(trello) -> None:
    url, site = trello
    board = site.board_named("Marketing backlog")
    cards = get(url, f"/1/boards/{board.id}/cards", customFieldItems="true", limit=1000).json()
    assert len(cards) == len(board.cards)
    check(cards, schema("Card", array=True))
    items = [item for card in cards for item in card["customFieldItems"]]
    assert items and all(isinstance(next(iter(i["value"].values())), str) for i in items if "value" in i)
    check(items, schema("CustomFieldItems", array=True))
    check(get(url, f"/1/cards/{cards[0]['id']}", customFieldItems="true").json(), response_schema("/cards/{id}", "get"))
    actions = get(url, f"/1/boards/{board.id}/actions", limit=1000).json()
    assert actions
    check(actions, schema("Action", array=True))


def test_writes_follow_the_spec_and_take_strings_as_trello_does(trello) -> None:
    url, site = trello
    board = site.board_named("Marketing backlog")
    card = next(iter(board.cards.values()))
    score = site.field_named(board, "Marketing score")
    rank = site.field_named(board, "Marketing rank")
    batch = requests.put(f"{url}/1/cards/{card.id}/customFields", params=AUTH, timeout=10, json={
        "customFieldItems": [{"idCustomField": score["id"], "value": {"number": "12.5"}},
                             {"idCustomField": rank["id"], "value": {"number": "3"}}]})
    assert batch.status_code == 200, batch.text
    assert site.value_of(card.id, "Marketing score") == "12.5" and site.value_of(card.id, "Marketing rank") == "3"
    # A number sent as a JSON number is refused, as Trello refuses it: values are strings.
    refused = requests.put(f"{url}/1/cards/{card.id}/customFields", params=AUTH, timeout=10, json={
        "customFieldItems": [{"idCustomField": score["id"], "value": {"number": 12.5}}]})
    assert refused.status_code == 400 and site.value_of(card.id, "Marketing score") == "12.5"
    one = requests.put(f"{url}/1/cards/{card.id}/customField/{score['id']}/item", params=AUTH, timeout=10,
                       json={"value": {"number": "13"}})
    assert one.status_code == 200 and site.value_of(card.id, "Marketing score") == "13"
    check(one.json(), schema("CustomFieldItems"))

    moved = requests.put(f"{url}/1/cards/{card.id}", params=AUTH, json={"pos": 32768}, timeout=10)
    assert moved.status_code == 200
    check(moved.json(), response_schema("/cards/{id}", "put"))
    comment = requests.post(f"{url}/1/cards/{card.id}/actions/comments", params=AUTH, timeout=10,
                            json={"text": "Résultat KPI : 80 % de l'objectif 🎯"})
    assert comment.status_code == 200
    check(comment.json(), response_schema("/cards/{id}/actions/comments", "post"))
    created = requests.post(f"{url}/1/customFields", params=AUTH, timeout=10, json={
        "idModel": board.id, "modelType": "board", "name": "KPI result", "type": "text", "pos": "bottom"})
    assert created.status_code == 200
    check(created.json(), response_schema("/customFields", "post"))


def test_a_card_s_comments_are_read_back_as_its_actions_do_in_the_spec(trello) -> None:
    url, site = trello
    board = site.board_named("Marketing backlog")
    card = next(iter(board.cards.values()))
    for text in ("First result", "Résultat KPI : 80 % 🎯"):
        posted = requests.post(f"{url}/1/cards/{card.id}/actions/comments", params=AUTH, timeout=10,
                               json={"text": text})
        assert posted.status_code == 200
    site.user_sets_field(card.id, "Reach", 123)  # an updateCustomFieldItem action: not a comment
    comments = get(url, f"/1/cards/{card.id}/actions", filter="commentCard").json()
    check(comments, response_schema("/cards/{id}/actions", "get"))
    assert [a["data"]["text"] for a in comments] == ["Résultat KPI : 80 % 🎯", "First result"]  # newest first
    assert {a["type"] for a in comments} == {"commentCard"}
    assert all(a["data"]["card"]["id"] == card.id for a in comments)
    everything = get(url, f"/1/cards/{card.id}/actions", filter="all").json()
    check(everything, response_schema("/cards/{id}/actions", "get"))
    assert "updateCustomFieldItem" in {a["type"] for a in everything}
    # 50 a page, as the spec says, and nothing past page 19.
    for n in range(55):
        requests.post(f"{url}/1/cards/{card.id}/actions/comments", params=AUTH, timeout=10, json={"text": f"c{n}"})
    first = get(url, f"/1/cards/{card.id}/actions", filter="commentCard").json()
    second = get(url, f"/1/cards/{card.id}/actions", filter="commentCard", page=1).json()
    assert len(first) == 50 and first[0]["data"]["text"] == "c54" and len(second) == 7
    assert requests.get(f"{url}/1/cards/{card.id}/actions", params={**AUTH, "page": 20}, timeout=10).status_code == 400


def test_webhook_creation_follows_the_spec_after_a_head_check(trello) -> None:
    from fastapi import FastAPI, Response

    url, site = trello
    receiver = FastAPI()
    receiver.add_api_route("/hook", lambda: Response(status_code=200), methods=["HEAD"])
    with serve(receiver) as hook:
        created = requests.post(f"{url}/1/webhooks", params=AUTH, timeout=10, json={
            "callbackURL": f"{hook.url}/hook", "idModel": site.board_named("Marketing backlog").id,
            "description": "backlog-sync"})
        assert created.status_code == 200, created.text
        check(created.json(), response_schema("/webhooks/", "post"))
        refused = requests.post(f"{url}/1/webhooks", params=AUTH, timeout=10, json={
            "callbackURL": f"{hook.url}/nothing-here", "idModel": site.board_named("Marketing backlog").id})
        assert refused.status_code == 400 and "did not return 200" in refused.text
    assert len(site.webhooks) == 1


def test_refusals_are_shaped_like_trello_s(trello) -> None:
    url, site = trello
    board = site.board_named("Marketing backlog")
    assert requests.get(f"{url}/1/boards/{board.id}", params={**AUTH, "token": "wrong"}, timeout=10).text == \
        "invalid token"
    assert requests.get(f"{url}/1/boards/{board.id}", params={**AUTH, "key": "wrong"}, timeout=10).status_code == 401
    assert requests.get(f"{url}/1/cards/{'0' * 24}", params=AUTH, timeout=10).status_code == 404
    assert requests.get(f"{url}/1/boards/{board.id}/cards", params={**AUTH, "limit": 1001}, timeout=10) \
        .status_code == 400
    site.set_limits((3, 10.0), (300, 10.0))
    statuses = [requests.get(f"{url}/1/boards/{board.id}", params=AUTH, timeout=10) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert statuses[-1].json() == json.loads(
        spec_path("trello.json").parent.joinpath("examples", "trello", "rate_limited_429_token_body.json").read_text())
    assert "Retry-After" not in statuses[-1].headers
    assert site.violations["API_TOKEN_LIMIT_EXCEEDED"] == 1


def test_the_token_s_member_follows_the_spec_and_a_hidden_board_s_card_answers_401(trello) -> None:
    url, site = trello
    me = get(url, "/1/members/me", fields="id").json()
    assert me["id"] == site.me["id"]
    check(me, response_schema("/members/{id}", "get"))
    board = site.board_named("Marketing backlog")
    site.hidden_boards.add(board.id)
    refused = requests.get(f"{url}/1/cards/{next(iter(board.cards))}", params=AUTH, timeout=10)
    assert refused.status_code == 401 and refused.text == "unauthorized card permission requested"
