"""Objectives and reach_from_ga4 in the config: the worked example loads, and mistakes are named by file and
key path."""

from __future__ import annotations

import copy
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.config import ConfigError, load_config

EMAIL_LEADS: dict[str, Any] = {
    "key": "email-leads", "name": "Email lead generation +40% YoY", "owner": "mops@acme.example",
    "metric": "eventCount",
    "dimension_filter": {"eventName": "generate_lead", "sessionDefaultChannelGroup": "Email"},
    "baseline": "previous_year", "target": "+40%", "start": "2026-01-01", "end": "2026-12-31",
    "milestones": "quarterly", "split": "linear", "on_track": 1.0, "at_risk": 0.9,
}
BASE: dict[str, Any] = {
    "sources": [{"name": "marketing-jira", "kind": "jira", "base_url": "https://acme.atlassian.net",
                 "auth": {"email": "ops@acme.example", "token": {"env": "HOME"}}, "jql": "project = MKT"}],
    "ga4": {"property_id": "123456789"},
    "objectives": [EMAIL_LEADS],
}


def write(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "backlog-sync.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def problems(tmp_path: Path, change: Any) -> list[str]:
    config = copy.deepcopy(BASE)
    change(config)
    path = write(tmp_path, config)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def test_the_worked_example_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE))
    (objective,) = config.objectives
    assert objective.baseline_period() == (date(2025, 1, 1), date(2025, 12, 31))
    assert objective.dimension_filter["eventName"] == "generate_lead"
    assert config.ga4 is not None and config.ga4.lookback_days == 3


def test_an_explicit_baseline_period_and_an_absolute_target(tmp_path: Path) -> None:
    config = copy.deepcopy(BASE)
    config["objectives"][0].update(baseline={"start": "2024-01-01", "end": "2024-12-31"}, target=51100)
    objective = load_config(write(tmp_path, config)).objectives[0]
    assert objective.baseline_years_back == 2


@pytest.mark.parametrize(("field", "value", "where", "what"), [
    ("metric", "bounceRate", "objectives[0].metric", "rate or an average"),
    ("metric", "emailLeads", "objectives[0].metric", "not a GA4 metric"),
    ("metric", "eventCount /", "objectives[0].metric", "not a metric name or an expression"),
    ("dimension_filter", {"channel": "Email"}, "objectives[0].dimension_filter", "not a GA4 dimension"),
    ("target", "40", "objectives[0].target", "looks like '+40%'"),
    ("target", "+0%", "objectives[0].target", "not 0%"),
    ("target", -5, "objectives[0].target", "above zero"),
    ("baseline", {"start": "2025-02-01", "end": "2025-12-31"}, "objectives[0].baseline", "whole years earlier"),
    ("baseline", {"value": 100, "period": "previous_year"}, "objectives[0].baseline", "exactly one of"),
    ("baseline", "last_week", "objectives[0].baseline.period", "previous_year"),
    ("end", "2025-12-01", "objectives[0].end", "end must be after start"),
    ("at_risk", 1.2, "objectives[0].at_risk", "must not exceed on_track"),
    ("milestones", "weekly", "objectives[0].milestones", "quarterly"),
    ("split", "exponential", "objectives[0].split", "compound"),
])
def test_objective_mistakes_name_the_key(tmp_path: Path, field: str, value: Any, where: str, what: str) -> None:
    found = problems(tmp_path, lambda config: config["objectives"][0].__setitem__(field, value))
    path = tmp_path / "backlog-sync.yaml"
    matching = [p for p in found if p.startswith(f"{path}: {where}:")]
    assert matching, found
    assert what in matching[0], matching


def test_objectives_need_the_ga4_section(tmp_path: Path) -> None:
    found = problems(tmp_path, lambda config: config.pop("ga4"))
    assert any("objectives need a 'ga4' section" in p for p in found), found


def test_reach_from_ga4_schema(tmp_path: Path) -> None:
    config = copy.deepcopy(BASE)
    config["sources"][0]["reach_from_ga4"] = {"names": "channel", "days": 28}
    source = load_config(write(tmp_path, config)).sources[0]
    assert source.reach_from_ga4 is not None
    assert (source.reach_from_ga4.dimension, source.reach_from_ga4.metric) == ("sessionDefaultChannelGroup",
                                                                               "activeUsers")
    found = problems(tmp_path, lambda c: c["sources"][0].__setitem__("reach_from_ga4", {"metric": "bounceRate"}))
    assert any(": sources[0].reach_from_ga4:" in p and "rate or an average" in p for p in found), found
    found = problems(tmp_path, lambda c: c["sources"][0].__setitem__("reach_from_ga4", {"days": 0}))
    assert any(": sources[0].reach_from_ga4.days:" in p for p in found), found


def test_what_the_kpi_tables_cannot_hold_is_refused_by_key_path(tmp_path: Path) -> None:
    """PostgreSQL refuses a value longer than its VARCHAR (SQLite would store it): check-config says so first."""
    path = tmp_path / "backlog-sync.yaml"
    found = problems(tmp_path, lambda c: c["objectives"][0].__setitem__("key", "k" * 65))
    assert any(p.startswith(f"{path}: objectives[0].key:") and "64 characters" in p for p in found), found
    # 64 characters fit; so does a filter just under 500 characters of JSON.
    config = copy.deepcopy(BASE)
    config["objectives"][0]["key"] = "k" * 64
    value = "x" * (500 - len('[["eventName",""]]'))
    config["objectives"][0]["dimension_filter"] = {"eventName": value}
    assert load_config(write(tmp_path, config)).objectives[0].key == "k" * 64
    found = problems(tmp_path, lambda c: c["objectives"][0].__setitem__("dimension_filter",
                                                                          {"eventName": value + "x"}))
    assert any(p.startswith(f"{path}: objectives[0].dimension_filter:") and "501 characters" in p
               for p in found), found


def test_a_filter_that_fits_the_check_fits_the_table(engine: Any) -> None:
    """The check measures the text the job stores: the longest accepted filter is stored on every database."""
    from service.config import Objective
    from service.db import session_scope
    from service.kpi.job import series_of
    from service.tables import KpiCoverageRow

    value = "é" * (500 - len('[["eventName",""]]'))  # non-ASCII counts as one character, as VARCHAR counts it
    objective = Objective.model_validate({**EMAIL_LEADS, "key": "k" * 64, "dimension_filter": {"eventName": value}})
    series = series_of(objective)
    assert len(series.filters_key) == 500
    with session_scope(engine) as db:
        db.add(KpiCoverageRow(property_id="1", filters=series.filters_key, metrics=series.metrics_key))


def test_reach_from_ga4_matches_each_kind_of_name_against_its_own_dimension(tmp_path: Path) -> None:
    def reach_problems(reach: dict[str, Any]) -> list[str]:
        found = problems(tmp_path, lambda c: c["sources"][0].__setitem__("reach_from_ga4", reach))
        return [p for p in found if ": sources[0].reach_from_ga4:" in p]

    # A segment has no natural GA4 dimension: it must be named, not left to match landing pages.
    found = reach_problems({"names": "segment"})
    assert found and "names: segment needs a 'dimension'" in found[0], found
    found = reach_problems({"names": "channel", "dimension": "landingPage"})
    assert found and "'landingPage' does not hold channel names" in found[0], found
    found = reach_problems({"names": "page", "dimension": "sessionDefaultChannelGroup"})
    assert found and "does not hold page names" in found[0], found

    config = copy.deepcopy(BASE)
    config["sources"][0]["reach_from_ga4"] = {"names": "segment", "dimension": "audienceName"}
    reach = load_config(write(tmp_path, config)).sources[0].reach_from_ga4
    assert reach is not None and reach.dimension == "audienceName"
    config["sources"][0]["reach_from_ga4"] = {"names": "page"}
    reach = load_config(write(tmp_path, config)).sources[0].reach_from_ga4
    assert reach is not None and reach.dimension == "landingPage"
