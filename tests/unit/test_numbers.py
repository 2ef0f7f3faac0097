"""Tests for the tolerant value readers: what they accept, what they refuse and why, and that none crash."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.numbers import read_date, read_datetime, read_impact, read_number, read_percent


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (42, 42.0),
        (42.5, 42.5),
        ("42", 42.0),
        ("42.5", 42.5),
        ("42,5", 42.5),
        (" 1 200 ", 1200.0),
        ("1\u202f200,5", 1200.5),
        ("1,200.5", 1200.5),
        ("1.200,5", 1200.5),
        ("1,200,000", 1200000.0),
        ("80%", 80.0),
        ("80 %", 80.0),
        ("-3", -3.0),
    ],
)
def test_read_number_accepts_the_forms_tools_hold(raw, expected):
    assert read_number(raw) == (expected, None)


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_read_number_missing_is_none_without_reason(raw):
    assert read_number(raw) == (None, None)


@pytest.mark.parametrize(
    "raw", ["abc", float("nan"), float("inf"), "inf", "nan", True, False, [1], {"a": 1}, "4 2x"]
)
def test_read_number_refuses_with_a_reason(raw):
    value, reason = read_number(raw)
    assert value is None
    assert isinstance(reason, str) and reason


def test_read_number_reason_names_a_boolean():
    assert "boolean" in read_number(True)[1]


def test_read_percent_range_and_fraction_policy():
    assert read_percent("80%") == (80.0, None)
    assert read_percent(0) == (0.0, None)
    assert read_percent(100) == (100.0, None)
    assert read_percent(1) == (1.0, None)
    value, reason = read_percent(0.8)  # not silently turned into 80
    assert value is None and "80, not 0.8" in reason
    value, reason = read_percent(120)
    assert value is None and "between 0 and 100" in reason
    assert read_percent(-5)[0] is None
    assert read_percent(None) == (None, None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (3, 3.0),
        ("0.25", 0.25),
        ("0,5", 0.5),
        ("1", 1.0),
        (2.0, 2.0),
        ("massive", 3.0),
        ("High", 2.0),
        ("medium", 1.0),
        ("low", 0.5),
        ("minimal", 0.25),
        ("massif", 3.0),
        ("Élevé", 2.0),
        ("eleve", 2.0),
        ("moyen", 1.0),
        ("faible", 0.5),
        ("minime", 0.25),
    ],
)
def test_read_impact_scale_and_words(raw, expected):
    assert read_impact(raw) == (expected, None)


def test_read_impact_refuses_values_off_the_scale():
    assert read_impact(7) == (None, "impact must be one of 0.25, 0.5, 1, 2, 3, got 7")
    value, reason = read_impact("huge")
    assert value is None and reason.startswith("impact must be one of 0.25, 0.5, 1, 2, 3")
    assert read_impact("") == (None, None)


def test_read_date_forms():
    assert read_date("2026-03-01") == (date(2026, 3, 1), None)
    assert read_date(date(2026, 3, 1)) == (date(2026, 3, 1), None)
    assert read_date("2026-03-01T23:30:00.000+0100") == (date(2026, 3, 1), None)
    assert read_date(None) == (None, None)
    value, reason = read_date("01/03/2026")
    assert value is None and "ISO date" in reason
    assert read_date(20260301)[0] is None


def test_read_datetime_jira_and_iso_forms():
    value, reason = read_datetime("2026-03-01T10:15:30.000+0100")
    assert reason is None
    assert value == datetime(2026, 3, 1, 9, 15, 30, tzinfo=UTC)
    assert value.utcoffset() == timedelta(hours=1)
    assert read_datetime("2026-03-01T09:15:30Z") == (datetime(2026, 3, 1, 9, 15, 30, tzinfo=UTC), None)
    aware = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5)))
    assert read_datetime(aware) == (aware, None)


def test_read_datetime_refuses_naive_and_garbage():
    value, reason = read_datetime("2026-03-01T10:15:30")
    assert value is None and "time zone" in reason
    assert read_datetime(datetime(2026, 3, 1))[1] == "datetime has no time zone"
    assert read_datetime("yesterday")[0] is None
    assert read_datetime("") == (None, None)


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(json_like)
def test_no_reader_crashes_and_results_are_well_formed(raw):
    for reader in (read_number, read_percent, read_impact, read_date, read_datetime):
        value, reason = reader(raw)
        assert reason is None or (isinstance(reason, str) and reason)
        assert value is None or reason is None
    number, _ = read_number(raw)
    assert number is None or math.isfinite(number)
    percent, _ = read_percent(raw)
    assert percent is None or 0 <= percent <= 100
    impact, _ = read_impact(raw)
    assert impact is None or impact in (0.25, 0.5, 1.0, 2.0, 3.0)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789,.% -\u00a0\u202fabcé+eE", max_size=20))
def test_number_like_text_never_crashes(raw):
    value, reason = read_number(raw)
    assert (value is None) or (reason is None and math.isfinite(value))
