"""Tests for the shipped mapping profiles: each loads, EN and FR names map, folding works, overrides merge."""

from __future__ import annotations

import pytest

from mappings.model import ItemType, Status
from mappings.profile import Profile, default_profile

TOOLS = ("jira", "trello", "asana")
SCORING_FIELDS = (
    "reach",
    "impact",
    "confidence",
    "effort",
    "value",
    "time_criticality",
    "risk_reduction",
    "ease",
)


@pytest.mark.parametrize("tool", TOOLS)
def test_each_profile_loads_with_inputs_story_and_owned_fields(tool):
    profile = default_profile(tool)
    assert isinstance(profile, Profile)
    assert profile.language == "en"
    for logical in (
        *SCORING_FIELDS,
        "channel",
        "segment",
        "kpi",
        "hypothesis",
        "score",
        "rank",
        "kpi_result",
    ):
        assert profile.field_names(logical), f"{tool}: no field names for {logical}"
    assert profile.field_names("reach") == ["Reach", "Portée"]


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("seo", ItemType.TECHNICAL),
        ("PERF", ItemType.TECHNICAL),
        ("ab-test", ItemType.EXPERIMENT),
        ("A/B", ItemType.EXPERIMENT),
        ("Campagne", ItemType.CAMPAIGN),
        ("promo", ItemType.CAMPAIGN),
        ("Vidéo", ItemType.CONTENT),
        ("contenu", ItemType.CONTENT),
        ("launch", ItemType.FEATURE),
    ],
)
def test_label_types_fold_case_and_accents(tool, label, expected):
    assert default_profile(tool).item_type(None, [label]) is expected


@pytest.mark.parametrize(
    ("type_name", "expected"),
    [
        ("Feature", ItemType.FEATURE),
        ("fonctionnalite", ItemType.FEATURE),
        ("Experiment", ItemType.EXPERIMENT),
        ("EXPÉRIENCE", ItemType.EXPERIMENT),
        ("A/B test", ItemType.EXPERIMENT),
        ("Technique", ItemType.TECHNICAL),
        ("SEO", ItemType.TECHNICAL),
        ("Campaign", ItemType.CAMPAIGN),
        ("Contenu", ItemType.CONTENT),
        ("Bug", ItemType.OTHER),
        ("Story", ItemType.OTHER),
    ],
)
def test_jira_issue_types(type_name, expected):
    assert default_profile("jira").item_type(type_name, []) is expected


def test_jira_statuses_and_categories():
    jira = default_profile("jira")
    assert jira.status("Backlog", "new") is Status.BACKLOG
    assert jira.status("Some new status", "new") is Status.TODO
    assert jira.status("QA", "indeterminate") is Status.IN_PROGRESS
    assert jira.status("Shipped", "done") is Status.DONE
    for cancelled in ("Won't do", "WON'T DO", "Cancelled", "annule", "Abandonné"):
        assert jira.status(cancelled, "done") is Status.CANCELLED, cancelled
    assert jira.status("Unknown", None) is None


@pytest.mark.parametrize("tool", ["trello", "asana"])
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Backlog", Status.BACKLOG),
        ("Idées", Status.BACKLOG),
        ("ideas", Status.BACKLOG),
        ("To Do", Status.TODO),
        ("À faire", Status.TODO),
        ("a faire", Status.TODO),
        ("Todo", Status.TODO),
        ("Doing", Status.IN_PROGRESS),
        ("En cours", Status.IN_PROGRESS),
        ("en revue", Status.IN_PROGRESS),
        ("Review", Status.IN_PROGRESS),
        ("Done", Status.DONE),
        ("TERMINE", Status.DONE),
        ("Fait", Status.DONE),
        ("Annulé", Status.CANCELLED),
        ("Cancelled", Status.CANCELLED),
    ],
)
def test_list_and_section_names_in_english_and_french(tool, name, expected):
    assert default_profile(tool).status(name) is expected


def test_asana_types_come_from_the_type_enum_field():
    asana = default_profile("asana")
    assert asana.field_names("item_type") == ["Type"]
    assert asana.item_type("Expérience", []) is ItemType.EXPERIMENT
    assert asana.item_type("Autre", ["blog"]) is ItemType.CONTENT


def test_trello_has_no_types_so_labels_decide():
    trello = default_profile("trello")
    assert trello.types == {}
    assert trello.item_type(None, ["Contenu"]) is ItemType.CONTENT
    assert trello.item_type(None, ["random"]) is None


def test_merged_overrides_key_by_key_without_touching_the_default():
    jira = default_profile("jira")
    merged = jira.merged(
        {"statuses": {"Parking": "backlog"}, "fields": {"reach": ["Audience"]}, "language": "fr"}
    )
    assert merged.status("parking") is Status.BACKLOG
    assert merged.status("Won't do") is Status.CANCELLED  # the defaults are still there
    assert merged.field_names("reach") == ["Audience"]
    assert merged.field_names("impact") == ["Impact"]
    assert merged.language == "fr"
    assert jira.status("Parking") is None and jira.field_names("reach") == ["Reach", "Portée"]
    with pytest.raises(ValueError):
        jira.merged({"statuses": {"Parking": "not-a-status"}})
