"""Trello card -> BacklogItem and back: lists, labels, custom fields held as strings, odd values, payloads; and
the X-Trello-Webhook signature over bodies with French accents and emoji."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from connectors.trello_webhooks import parse_webhook, sign, verify_webhook
from mappings.model import ItemType, Status
from mappings.profile import default_profile
from mappings.trello import comment_body, created_from_id, owned_field_payload, to_item, trello_number
from tests.specs import spec_path

BOARD = "5abbe4b7ddc1b351ef961414"
FIELDS = {
    "f0000000000000000000reach": {"name": "Portée", "type": "number", "options": {}},
    "f000000000000000000impact": {"name": "Impact", "type": "list", "options": {"o1": "2", "o2": "High"}},
    "f000000000000000confidenc": {"name": "Confiance", "type": "number", "options": {}},
    "f00000000000000000effort0": {"name": "Effort", "type": "number", "options": {}},
    "f0000000000000000channel0": {"name": "Canal de diffusion", "type": "list", "options": {"o3": "TikTok"}},
    "f00000000000000000segment": {"name": "Segment cible", "type": "text", "options": {}},
    "f00000000000000000blocker": {"name": "Time criticality", "type": "checkbox", "options": {}},
    "f000000000000000000score0": {"name": "Marketing score", "type": "number", "options": {}},
    "f0000000000000000000rank0": {"name": "Marketing rank", "type": "number", "options": {}},
}
CONTEXT = {"base_url": "https://api.trello.com", "set_position": True, "boards": {BOARD: {
    "name": "Backlog marketing",
    "lists": {"l1": {"name": "À faire"}, "l2": {"name": "En cours"}, "l3": {"name": "Terminé"},
              "l4": {"name": "Parking"}},
    "labels": {"lb1": {"name": "Expérience"}},
    "members": {"m1": {"name": "Léa Martin", "username": "leamartin"}},
    "custom_fields": FIELDS,
}}}


def card(**overrides) -> dict:
    raw = {
        "id": "5f5e10000000000000000001", "idBoard": BOARD, "idList": "l1", "name": "Test A/B de la page",
        "desc": "En tant que : responsable acquisition\nJe veux : tester le titre\nAfin de : convertir plus",
        "labels": [{"id": "lb1", "name": "Expérience"}], "idMembers": ["m1"], "shortLink": "AbCd1234",
        "url": "https://trello.com/c/AbCd1234/7", "due": "2026-12-15T12:00:00.000Z",
        "dateLastActivity": "2026-11-30T10:00:00.000Z", "pos": 16384,
        "customFieldItems": [
            {"idCustomField": "f0000000000000000000reach", "value": {"number": "8000"}},
            {"idCustomField": "f000000000000000000impact", "idValue": "o1"},
            {"idCustomField": "f000000000000000confidenc", "value": {"number": "80"}},
            {"idCustomField": "f00000000000000000effort0", "value": {"number": "2"}},
            {"idCustomField": "f0000000000000000channel0", "idValue": "o3"},
            {"idCustomField": "f00000000000000000segment", "value": {"text": "18-24 ans"}},
            {"idCustomField": "f00000000000000000blocker", "value": {"checked": "true"}},
            {"idCustomField": "f000000000000000000score0", "value": {"number": "6400"}},
            {"idCustomField": "f0000000000000000000rank0", "value": {"number": "3"}},
        ],
    }
    raw.update(overrides)
    return raw


def test_a_french_card_maps_list_labels_story_and_string_values() -> None:
    item = to_item(card(), source="fr", profile=default_profile("trello"), context=CONTEXT)
    assert item.status is Status.TODO and item.raw_status == "À faire"
    assert item.item_type is ItemType.EXPERIMENT and item.labels == ["Expérience"]
    assert item.story.role == "responsable acquisition" and item.story.language == "fr"
    assert item.story.channel == "TikTok" and item.story.segment == "18-24 ans"
    assert (item.inputs.reach, item.inputs.impact, item.inputs.confidence, item.inputs.effort) == (8000, 2, 80, 2)
    assert item.inputs.time_criticality == 1  # a checked checkbox
    assert item.remote_values == {"score": 6400.0, "rank": 3}
    assert item.assignee == "Léa Martin" and str(item.due_date) == "2026-12-15" and item.key == "AbCd1234"
    assert item.extra["board_id"] == BOARD and item.created_at is not None
    assert not item.problems


@pytest.mark.parametrize("list_id, status", [("l2", Status.IN_PROGRESS), ("l3", Status.DONE)])
def test_lists_name_the_status(list_id: str, status: Status) -> None:
    assert to_item(card(idList=list_id), source="fr", profile=default_profile("trello"), context=CONTEXT).status \
        is status


def test_odd_values_become_problems_not_guesses() -> None:
    items = card(idList="l4", customFieldItems=[
        {"idCustomField": "f0000000000000000000reach", "value": {"number": "beaucoup"}},
        {"idCustomField": "f000000000000000000impact", "idValue": "o2"},
        {"idCustomField": "f000000000000000confidenc", "value": {"number": "150"}},
        {"idCustomField": "f000000000000000000score0", "value": {"number": "n/a"}},
    ])
    item = to_item(items, source="fr", profile=default_profile("trello"), context=CONTEXT)
    fields = {p.field for p in item.problems}
    assert {"status", "reach", "confidence", "score"} <= fields
    assert item.status is Status.BACKLOG and item.inputs.reach is None and item.inputs.confidence is None
    assert item.inputs.impact == 2.0  # "High" reads as the RICE impact 2
    with pytest.raises(ValueError, match="id"):
        to_item({"name": "no id"}, source="fr", profile=default_profile("trello"), context=CONTEXT)


def test_payload_writes_strings_on_the_card_s_board_and_the_rank_position() -> None:
    payload = owned_field_payload({"score": 12.5, "rank": 3}, profile=default_profile("trello"), context=CONTEXT,
                                  extra={"board_id": BOARD})
    assert payload == {"customFieldItems": [
        {"idCustomField": "f000000000000000000score0", "value": {"number": "12.5"}},
        {"idCustomField": "f0000000000000000000rank0", "value": {"number": "3"}}], "pos": 3 * 16384}
    cleared = owned_field_payload({"rank": None}, profile=default_profile("trello"), context=CONTEXT,
                                  extra={"board_id": BOARD})
    assert cleared == {"customFieldItems": [{"idCustomField": "f0000000000000000000rank0", "value": ""}]}
    assert trello_number(1234567.0) == "1234567" and trello_number(0.35) == "0.35"
    profile = default_profile("trello").merged({"fields": {"score": ["Priorité"]}})
    with pytest.raises(ValueError, match="'Priorité'.*not on board 'Backlog marketing'"):
        owned_field_payload({"score": 1.0}, profile=profile, context=CONTEXT, extra={"board_id": BOARD})
    assert comment_body("Résultat : 80 %") == {"text": "Résultat : 80 %"}


def test_ids_carry_their_creation_time() -> None:
    assert created_from_id("5abbe4b7ddc1b351ef961414").isoformat() == "2018-03-28T18:53:43+00:00"


SECRET = "an-application-secret"
URL = "https://backlog.example.com/webhooks/trello/fr"


def test_signature_covers_body_and_callback_url_with_accents_and_emoji() -> None:
    body = json.dumps({"action": {"id": "5f5e10000000000000000099", "type": "updateCard", "data": {
        "card": {"id": "5f5e10000000000000000001", "name": "Soldes d'hiver — été 🎯 Crème brûlée"},
        "old": {"name": "Soldes"}}}}, ensure_ascii=False).encode("utf-8")
    assert "🎯".encode() in body and "é".encode() in body
    # What Trello signs: HMAC-SHA1 over the UTF-8 bytes of body + callback URL, base64. A fixed vector computed
    # outside Python: printf '%s' "$BODY$URL" | openssl dgst -sha1 -hmac "$SECRET" -binary | base64
    expected = "824020uK/wfmZ53RchfZMKhomYA="
    assert sign(SECRET, body, URL) == expected
    assert verify_webhook(headers={"X-Trello-Webhook": expected}, body=body, url=URL, secret=SECRET)
    # The pre-2016 signer cut each UTF-16 code unit to its low byte; Trello no longer signs that way.
    text = (body.decode("utf-8") + URL).encode("utf-16-le")
    legacy_bytes = bytes(text[i] for i in range(0, len(text), 2))
    legacy = base64.b64encode(hmac.new(SECRET.encode(), legacy_bytes, hashlib.sha1).digest()).decode()
    assert legacy != expected
    assert not verify_webhook(headers={"X-Trello-Webhook": legacy}, body=body, url=URL, secret=SECRET)
    # Another URL, another secret, a missing header, a changed byte: all refused.
    assert not verify_webhook(headers={"X-Trello-Webhook": expected}, body=body, url=URL + "/", secret=SECRET)
    assert not verify_webhook(headers={"X-Trello-Webhook": expected}, body=body, url=URL, secret="other")
    assert not verify_webhook(headers={}, body=body, url=URL, secret=SECRET)
    assert not verify_webhook(headers={"X-Trello-Webhook": expected}, body=body.replace(b"hiver", b"Hiver"),
                              url=URL, secret=SECRET)
    assert not verify_webhook(headers={"X-Trello-Webhook": expected}, body=body, url=URL, secret=None)


def test_parses_the_captured_trello_webhooks() -> None:
    examples = spec_path("trello.json").parent / "examples" / "trello"
    moved = parse_webhook(Path(examples / "webhook_updateCard_moved_list.json").read_bytes())
    assert len(moved) == 1 and moved[0].external_id == "53582e2da0fac5676a71427f"
    assert moved[0].changed_fields == ["idList"] and not moved[0].deleted
    comment = parse_webhook(Path(examples / "webhook_commentCard.json").read_bytes())
    assert comment[0].kind == "commentCard" and comment[0].changed_fields == []
    field = parse_webhook(json.dumps({"action": {"id": "a1", "type": "updateCustomFieldItem", "data": {
        "card": {"id": "c1"}, "customField": {"id": "f1", "name": "Marketing score"},
        "customFieldItem": {"idCustomField": "f1", "value": {"number": "12.5"}}}}}).encode())
    assert field[0].changed_fields == ["f1"] and field[0].changes == {"f1": "12.5"}
    assert parse_webhook(json.dumps({"action": {"id": "a2", "type": "updateList", "data": {}}}).encode()) == []
    assert parse_webhook(json.dumps({"action": {"id": "a3", "type": "deleteCard", "data": {
        "card": {"id": "c9"}}}}).encode())[0].deleted
    for bad in (b"not json", b"[]", b'{"model": {}}', b'{"action": {"id": "x", "type": "updateCard", "data": {}}}'):
        with pytest.raises(ValueError):
            parse_webhook(bad)
