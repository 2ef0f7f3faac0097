"""Asana task -> BacklogItem (sections EN/FR, type from the enum field or tags, custom fields, notes), the write
payloads, webhook parsing and signatures, on the seeded tasks and on the vendor's example bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connectors.asana_webhooks import parse_webhook, sign, verify_webhook
from mappings.asana import MappingError, comment_body, owned_field_payload, to_item
from mappings.model import ItemType, Status
from mappings.profile import default_profile
from sandbox.asana import AsanaWorkspace
from sandbox.asana_data import EN_PROJECT, FR_PROJECT
from tests.specs import spec_path

PROFILE = default_profile("asana").merged({"fields": {"score": ["Marketing score"], "rank": ["Marketing rank"]}})


@pytest.fixture(scope="module")
def workspace() -> AsanaWorkspace:
    return AsanaWorkspace()


def context(workspace: AsanaWorkspace) -> dict[str, Any]:
    return {"configured_projects": [EN_PROJECT, FR_PROJECT],
            "fields": {gid: {"name": spec["name"], "type": spec["resource_subtype"]}
                       for gid, spec in workspace.custom_fields.items()}}


def item(workspace: AsanaWorkspace, gid: str):
    raw = workspace.render_task(workspace.tasks[gid], None)
    return to_item(raw, source="mkt", profile=PROFILE, context=context(workspace))


def test_an_english_task_with_a_story_in_its_notes(workspace: AsanaWorkspace) -> None:
    mapped = item(workspace, "1203000000000001")
    assert mapped.title == "Spring newsletter campaign"
    assert mapped.status is Status.TODO and mapped.raw_status == "To Do"
    assert mapped.item_type is ItemType.CAMPAIGN
    assert (mapped.inputs.reach, mapped.inputs.impact, mapped.inputs.confidence, mapped.inputs.effort) == (
        12000, 2, 80, 3)
    assert mapped.story.role == "newsletter subscriber" and mapped.story.kpi == "newsletter-revenue"
    assert mapped.story.channel == "Email"  # the Channel text field agrees with the notes
    assert mapped.assignee == "Alex Johnson" and str(mapped.due_date) == "2027-03-01"
    assert mapped.container == EN_PROJECT and mapped.labels == ["campaign"]
    assert mapped.remote_values == {"score": None, "rank": None}
    assert not mapped.problems


def test_a_french_task_reads_french_sections_fields_and_story(workspace: AsanaWorkspace) -> None:
    mapped = item(workspace, "1203000000000015")
    assert mapped.status is Status.TODO and mapped.raw_status == "À faire"
    assert mapped.item_type is ItemType.TECHNICAL  # enum option "Technique"
    assert mapped.inputs.reach == 25000 and mapped.inputs.confidence == 80  # "Portée", "Confiance"
    assert mapped.story.role == "responsable SEO" and mapped.story.language == "fr"
    in_progress = item(workspace, "1203000000000016")
    assert in_progress.status is Status.IN_PROGRESS and in_progress.story.channel == "E-mail"


def test_type_falls_back_to_tags_and_completed_means_done(workspace: AsanaWorkspace) -> None:
    assert item(workspace, "1203000000000003").item_type is ItemType.TECHNICAL  # no Type; tags seo, performance
    assert item(workspace, "1203000000000008").status is Status.DONE
    assert item(workspace, "1203000000000014").item_type is ItemType.OTHER  # no Type, an unknown tag


def test_odd_values_become_problems(workspace: AsanaWorkspace) -> None:
    chatbot = item(workspace, "1203000000000010")
    assert chatbot.inputs.reach is None
    confidence = item(workspace, "1203000000000012")
    assert any(p.field == "confidence" for p in confidence.problems)
    raw = workspace.render_task(workspace.tasks["1203000000000001"], None)
    raw["memberships"] = [{"project": {"gid": EN_PROJECT}, "section": {"gid": "1", "name": "Parking lot"}}]
    raw["completed"] = False
    raw["due_on"] = "next week"
    odd = to_item(raw, source="mkt", profile=PROFILE, context=context(workspace))
    assert odd.status is Status.BACKLOG
    assert {p.field for p in odd.problems} >= {"section", "due_on"}
    with pytest.raises(MappingError):
        to_item({"name": "no gid"}, source="mkt", profile=PROFILE, context={})


def test_owned_fields_are_read_back_and_written_by_gid(workspace: AsanaWorkspace) -> None:
    ctx = context(workspace)
    score, rank = workspace.field_gid("Marketing score"), workspace.field_gid("Marketing rank")
    assert owned_field_payload({"score": 12.5, "rank": 3}, profile=PROFILE, context=ctx) == {
        "data": {"custom_fields": {score: 12.5, rank: 3}}}
    raw = workspace.render_task(workspace.tasks["1203000000000001"], None)
    for field in raw["custom_fields"]:
        if field["gid"] == score:
            field["number_value"] = 12.5
        if field["gid"] == rank:
            field["number_value"] = 3.0
    assert to_item(raw, source="mkt", profile=PROFILE, context=ctx).remote_values == {"score": 12.5, "rank": 3}
    missing = PROFILE.merged({"fields": {"score": ["Priority points"]}})
    with pytest.raises(ValueError, match="Priority points"):
        owned_field_payload({"score": 1.0}, profile=missing, context=ctx)
    text_field = PROFILE.merged({"fields": {"rank": ["Channel"]}})
    with pytest.raises(ValueError, match="not a number"):
        owned_field_payload({"rank": 1}, profile=text_field, context=ctx)
    assert comment_body("KPI on track") == {"data": {"text": "KPI on track"}}


def examples(name: str) -> bytes:
    return (spec_path("asana.yaml").parent / "examples" / "asana" / name).read_bytes()


def test_webhook_bodies_from_the_vendor_examples() -> None:
    events = parse_webhook(examples("webhook_delivery_body.json"))
    assert [(e.external_id, e.kind, e.changed_fields) for e in events] == [("12345", "task:changed", ["assignee"])]
    assert parse_webhook(examples("webhook_heartbeat_body.json")) == []


def test_custom_field_changes_name_the_field_by_gid_and_deletions_are_deletions() -> None:
    body = json.dumps({"events": [
        {"action": "changed", "resource": {"gid": "7", "resource_type": "task"}, "created_at": "x",
         "change": {"field": "custom_fields", "action": "changed",
                    "new_value": {"gid": "99", "resource_type": "custom_field", "number_value": 4.5}}},
        {"action": "deleted", "resource": {"gid": "8", "resource_type": "task"}, "created_at": "x"},
        {"action": "added", "resource": {"gid": "5", "resource_type": "story"}, "created_at": "x",
         "parent": {"gid": "9", "resource_type": "task"}},
        {"action": "changed", "resource": {"gid": "1", "resource_type": "project"}, "created_at": "x"},
    ]}).encode()
    changed, deleted, comment = parse_webhook(body)
    assert (changed.external_id, changed.changed_fields, changed.changes) == ("7", ["99"], {"99": 4.5})
    assert deleted.deleted and deleted.external_id == "8"
    assert comment.external_id == "9" and not comment.deleted
    for bad in (b"not json", b"[]", b'{"events": {}}', b'{"events": [{"resource": {}}]}'):
        with pytest.raises(ValueError):
            parse_webhook(bad)


def test_signatures() -> None:
    body = b'{"events": []}'
    good = {"X-Hook-Signature": sign("s3cret", body)}
    # HMAC-SHA256 of the body, hex: a fixed vector (computed with openssl), not only a round trip.
    assert good["X-Hook-Signature"] == "cd18eab860dcfde5d0b5158b351721f71ec961f8f924b2543048a7056c407d91"
    assert verify_webhook(headers=good, body=body, url="", secret="s3cret")
    assert not verify_webhook(headers=good, body=body + b" ", url="", secret="s3cret")
    assert not verify_webhook(headers=good, body=body, url="", secret="other")
    assert not verify_webhook(headers={}, body=body, url="", secret="s3cret")
    assert not verify_webhook(headers=good, body=body, url="", secret=None)
