"""Tests for the Jira issue -> BacklogItem mapping and the Jira write payloads (pure, no I/O)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.adf import adf_to_text, text_to_adf
from mappings.jira import MappingError, comment_body, owned_field_payload, to_item
from mappings.model import BacklogItem, ItemType, Status
from mappings.profile import default_profile
from tests.specs import JIRA_EXAMPLES

EXAMPLES = JIRA_EXAMPLES
PROFILE = default_profile("jira")
CONTEXT = {
    "base_url": "https://x.atlassian.net",
    "user_time_zone": "Europe/Paris",
    "fields": {
        "customfield_10050": {"name": "Reach", "type": "number", "custom": True},
        "customfield_10051": {"name": "Impact", "type": "option", "custom": True},
        "customfield_10052": {"name": "Confiance", "type": "number", "custom": True},
        "customfield_10053": {"name": "Effort", "type": "number", "custom": True},
        "customfield_10054": {"name": "Canal de diffusion", "type": "option", "custom": True},
        "customfield_10055": {"name": "KPI", "type": "string", "custom": True},
        "customfield_10056": {"name": "Business value", "type": "number", "custom": True},
        "customfield_10020": {"name": "Sprint", "type": "array", "custom": True},
        "customfield_10060": {"name": "Marketing score", "type": "number", "custom": True},
        "customfield_10061": {"name": "Marketing rank", "type": "number", "custom": True},
        "customfield_10062": {
            "name": "KPI result",
            "type": "string",
            "custom": True,
            "schema": {
                "type": "string",
                "custom": "com.atlassian.jira.plugin.system.customfieldtypes:textarea",
            },
        },
        "summary": {"name": "Summary", "type": "string", "custom": False},
    },
}

DESCRIPTION = text_to_adf(
    "As a: SEO lead\nI want: faster landing pages\nSo that: more organic sign-ups\n"
    "Channel: Organic search\nHypothesis: LCP under 2 s lifts conversion\n\n"
    "Acceptance criteria:\n- LCP < 2 s\n- no CLS"
)


def _issue(**fields) -> dict:
    base = {
        "summary": "Speed up landing pages",
        "description": DESCRIPTION,
        "issuetype": {"name": "Task"},
        "labels": ["seo", "q2"],
        "status": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}},
        "assignee": {"displayName": "Mia Krystof", "accountId": "5b10"},
        "duedate": "2026-04-30",
        "created": "2026-03-01T10:15:30.000+0100",
        "updated": "2026-03-02T08:00:00.000+0000",
        "project": {"key": "MKT"},
        "customfield_10050": 2000,
        "customfield_10051": {"value": "High", "id": "10100"},
        "customfield_10052": "80%",
        "customfield_10053": "4",
        "customfield_10054": {"value": "Email"},
        "customfield_10055": "organic_sessions",
        "customfield_10020": [
            {"id": 1, "name": "Sprint 1", "state": "closed"},
            {"id": 2, "name": "Sprint 2", "state": "active"},
        ],
        "customfield_10060": 800.0,
        "customfield_10061": 3,
        "customfield_10062": text_to_adf("+12 % organic sessions"),
    }
    base.update(fields)
    return {
        "id": "10002",
        "key": "MKT-1",
        "self": "https://x.atlassian.net/rest/api/3/issue/10002",
        "fields": base,
    }


def _map(raw: dict) -> BacklogItem:
    return to_item(raw, source="marketing-jira", profile=PROFILE, context=CONTEXT)


def test_full_issue_maps_every_field():
    item = _map(_issue())
    assert (item.external_id, item.key, item.url) == (
        "10002",
        "MKT-1",
        "https://x.atlassian.net/browse/MKT-1",
    )
    assert item.title == "Speed up landing pages"
    assert item.item_type is ItemType.TECHNICAL  # Task is "other", the "seo" label refines it
    assert (item.status, item.raw_status) == (Status.IN_PROGRESS, "In Progress")
    assert item.assignee == "Mia Krystof"
    assert item.sprint == "Sprint 2"
    assert item.due_date == date(2026, 4, 30)
    assert item.created_at == datetime(2026, 3, 1, 9, 15, 30, tzinfo=UTC)
    assert item.container == "MKT"
    assert (item.inputs.reach, item.inputs.impact, item.inputs.confidence, item.inputs.effort) == (
        2000,
        2,
        80,
        4,
    )
    # The custom field wins over the description for the channel; the description fills the rest.
    assert item.story.channel == "Email"
    assert item.story.kpi == "organic_sessions"
    assert (item.story.role, item.story.want, item.story.so_that) == (
        "SEO lead",
        "faster landing pages",
        "more organic sign-ups",
    )
    assert item.story.hypothesis == "LCP under 2 s lifts conversion"
    assert item.story.acceptance_criteria == ["LCP < 2 s", "no CLS"]
    assert item.remote_values == {"score": 800.0, "rank": 3, "kpi_result": "+12 % organic sessions"}
    assert item.problems == []


def test_spec_example_issue_maps_with_problems_but_no_crash():
    body = json.loads((EXAMPLES / "search_jql_response.json").read_text())
    item = _map(body["issues"][0])
    assert (item.external_id, item.key) == ("10002", "ED-1")
    assert item.description == "Main order flow broken"  # v2-style plain string description is accepted
    assert item.title == "ED-1"  # the spec example has no summary
    assert {p.field for p in item.problems} >= {"summary", "status"}


@pytest.mark.parametrize(
    ("status", "category", "expected"),
    [
        ("Backlog", "new", Status.BACKLOG),
        ("Open", "new", Status.TODO),
        ("Doing stuff", "indeterminate", Status.IN_PROGRESS),
        ("Closed", "done", Status.DONE),
        ("Won't do", "done", Status.CANCELLED),
        ("Abandonné", "done", Status.CANCELLED),
        ("ANNULE", "done", Status.CANCELLED),
    ],
)
def test_status_by_name_then_category(status, category, expected):
    item = _map(_issue(status={"name": status, "statusCategory": {"key": category}}))
    assert item.status is expected and item.raw_status == status


@pytest.mark.parametrize(
    ("issue_type", "labels", "expected"),
    [
        ("Expérience", [], ItemType.EXPERIMENT),
        ("A/B test", [], ItemType.EXPERIMENT),
        ("Campagne", ["seo"], ItemType.CAMPAIGN),
        ("Story", ["blog"], ItemType.CONTENT),
        ("Story", [], ItemType.OTHER),
        ("Unknown type", [], ItemType.OTHER),
    ],
)
def test_item_type_from_issue_type_then_labels(issue_type, labels, expected):
    assert _map(_issue(issuetype={"name": issue_type}, labels=labels)).item_type is expected


def test_invalid_inputs_become_named_problems_and_stay_none():
    item = _map(_issue(customfield_10050="lots", customfield_10052=0.8, customfield_10053=True))
    assert item.inputs.reach is None and item.inputs.confidence is None and item.inputs.effort is None
    problems = {p.field: p for p in item.problems}
    assert problems["reach"].reason == "not a number: 'lots'" and problems["reach"].value == "lots"
    assert "80, not 0.8" in problems["confidence"].reason
    assert "boolean" in problems["effort"].reason


def test_impact_off_the_rice_scale_is_kept_for_ice_and_words_are_read():
    assert _map(_issue(customfield_10051={"value": "7"})).inputs.impact == 7
    assert _map(_issue(customfield_10051="massif")).inputs.impact == 3
    item = _map(_issue(customfield_10051="huge"))
    assert item.inputs.impact is None and any(p.field == "impact" for p in item.problems)


def test_fields_are_resolved_by_name_not_by_id():
    context = copy.deepcopy(CONTEXT)
    context["fields"]["customfield_99999"] = context["fields"].pop("customfield_10050")
    item = to_item(_issue(customfield_99999=42), source="s", profile=PROFILE, context=context)
    assert item.inputs.reach == 42


def test_expand_names_table_is_used_when_the_context_lacks_a_field():
    raw = _issue(customfield_12345=7)
    raw["names"] = {"customfield_12345": "Ease"}
    assert _map(raw).inputs.ease == 7


def test_legacy_sprint_strings_and_missing_sprint():
    legacy = [
        "com.atlassian.greenhopper.service.sprint.Sprint@1f[id=1,rapidViewId=1,state=CLOSED,name=Old,goal=]",
        "com.atlassian.greenhopper.service.sprint.Sprint@2a[id=2,rapidViewId=1,state=FUTURE,name=Next one]",
    ]
    assert _map(_issue(customfield_10020=legacy)).sprint == "Next one"
    assert _map(_issue(customfield_10020=None)).sprint is None


def test_remote_values_are_none_when_our_fields_are_empty_and_absent_when_not_configured():
    item = _map(_issue(customfield_10060=None, customfield_10061=None, customfield_10062=None))
    assert item.remote_values == {"score": None, "rank": None, "kpi_result": None}
    context = copy.deepcopy(CONTEXT)
    del context["fields"]["customfield_10062"]
    assert "kpi_result" not in to_item(_issue(), source="s", profile=PROFILE, context=context).remote_values


def test_odd_shapes_record_problems_without_raising():
    item = _map({"id": 5, "key": "MKT-9", "fields": None})
    assert item.external_id == "5" and item.title == "MKT-9" and item.problems[0].field == "fields"
    item = _map(_issue(labels="seo", assignee="someone", created="yesterday", duedate=12, status=None))
    assert {"labels", "assignee", "created", "duedate", "status"} <= {p.field for p in item.problems}


@pytest.mark.parametrize(
    "raw", [{}, {"key": "MKT-1", "fields": {}}, {"id": None}, {"id": ""}, {"id": True}, []]
)
def test_issue_without_id_raises_mapping_error(raw):
    with pytest.raises(MappingError, match="no .id.|JSON object"):
        _map(raw)
    assert issubclass(MappingError, ValueError)


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
field_keys = st.sampled_from(
    [
        "summary",
        "description",
        "issuetype",
        "labels",
        "status",
        "assignee",
        "duedate",
        "created",
        "updated",
        "project",
        *CONTEXT["fields"].keys(),
    ]
)


@settings(max_examples=250, deadline=None)
@given(
    st.dictionaries(field_keys, json_like, max_size=12) | json_like,
    st.one_of(st.text(min_size=1, max_size=8), st.integers()),
    json_like,
)
def test_arbitrary_json_never_crashes_to_item(fields, issue_id, key):
    raw = {"id": issue_id, "key": key, "fields": fields}
    if isinstance(issue_id, str) and not issue_id.strip():
        with pytest.raises(MappingError):
            _map(raw)
        return
    item = _map(raw)
    assert item.external_id == str(issue_id).strip()
    assert isinstance(item, BacklogItem)


def test_owned_field_payload_uses_ids_and_adf_for_paragraph_fields():
    payload = owned_field_payload(
        {"score": 12.5, "rank": 3, "kpi_result": "+12 %"}, profile=PROFILE, context=CONTEXT
    )
    assert payload == {
        "fields": {
            "customfield_10060": 12.5,
            "customfield_10061": 3,
            "customfield_10062": text_to_adf("+12 %"),
        }
    }


def test_owned_field_payload_names_a_missing_field():
    context = copy.deepcopy(CONTEXT)
    del context["fields"]["customfield_10060"]
    with pytest.raises(ValueError, match="'Marketing score'.*does not exist"):
        owned_field_payload({"score": 1}, profile=PROFILE, context=context)
    with pytest.raises(ValueError, match="owns"):
        owned_field_payload({"summary": "x"}, profile=PROFILE, context=CONTEXT)


def test_comment_body_is_adf_like_the_spec_example():
    body = comment_body("Score 800 (RICE)\n\n- reach 2000\n- impact 2")
    spec = json.loads((EXAMPLES / "comment_add_request_adf.json").read_text())
    assert body["body"]["type"] == spec["body"]["type"] == "doc"
    assert body["body"]["version"] == spec["body"]["version"]
    assert [block["type"] for block in body["body"]["content"]] == ["paragraph", "bulletList"]
    assert adf_to_text(body["body"]) == "Score 800 (RICE)\n\n- reach 2000\n- impact 2"


def test_adf_to_text_reads_the_spec_comment_and_nested_nodes():
    spec = json.loads((EXAMPLES / "comment_add_request_adf.json").read_text())
    assert adf_to_text(spec["body"]).startswith("Lorem ipsum dolor sit amet")
    nested = {
        "type": "doc",
        "content": [
            {"type": "heading", "content": [{"type": "text", "text": "Story"}]},
            {
                "type": "paragraph",
                "content": [
                    {"type": "text", "text": "As a", "marks": [{"type": "strong"}]},
                    {"type": "text", "text": ": buyer"},
                    {"type": "hardBreak"},
                    {"type": "mention", "attrs": {"text": "@Mia"}},
                ],
            },
            {
                "type": "orderedList",
                "content": [
                    {
                        "type": "listItem",
                        "content": [
                            {"type": "paragraph", "content": [{"type": "text", "text": "one"}]},
                            {
                                "type": "bulletList",
                                "content": [
                                    {
                                        "type": "listItem",
                                        "content": [
                                            {
                                                "type": "paragraph",
                                                "content": [{"type": "text", "text": "inner"}],
                                            }
                                        ],
                                    }
                                ],
                            },
                        ],
                    }
                ],
            },
            {"type": "unknownNode", "content": "not a list"},
        ],
    }
    assert adf_to_text(nested) == "Story\n\nAs a: buyer\n@Mia\n\n1. one\n  - inner"


@settings(max_examples=200, deadline=None)
@given(json_like)
def test_adf_to_text_never_crashes(document):
    assert isinstance(adf_to_text(document), str)


def test_comment_body_is_wiki_text_for_data_center():
    assert comment_body("Score 800\n- reach 2000", context={"deployment_type": "Server"}) == {
        "body": "Score 800\n- reach 2000"}
    assert comment_body("Score 800", context={"deployment_type": "Cloud"})["body"]["type"] == "doc"
