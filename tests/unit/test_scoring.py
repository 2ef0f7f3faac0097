"""Tests for the scoring engine: worked examples, named problems, quadrants, tie-breaks, rank properties."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.model import BacklogItem, Method, Quadrant, ScoringInputs
from service.scoring import ice_score, rank, rice_score, score_item, score_items, value_effort, wsjf_score


def _item(external_id: str, key: str | None = None, **fields) -> BacklogItem:
    inputs = fields.pop("inputs", {})
    return BacklogItem(
        source="marketing-jira",
        external_id=external_id,
        key=key,
        title=external_id,
        inputs=ScoringInputs(**inputs),
        **fields,
    )


def test_rice_worked_example():
    # 2000 people x impact 2 x 80 % confidence / 4 person-weeks = 2000 * 2 * 0.8 / 4 = 800
    score, problems = rice_score(ScoringInputs(reach=2000, impact=2, confidence=80, effort=4))
    assert score == pytest.approx(800.0)
    assert problems == []


def test_rice_small_impact_example():
    # 500 x 0.25 x 0.5 / 0.5 = 125
    assert rice_score(ScoringInputs(reach=500, impact=0.25, confidence=50, effort=0.5))[0] == pytest.approx(
        125.0
    )


@pytest.mark.parametrize("missing", ["reach", "impact", "confidence", "effort"])
def test_rice_missing_input_names_it(missing):
    values = {"reach": 2000, "impact": 2, "confidence": 80, "effort": 4}
    values[missing] = None
    score, problems = rice_score(ScoringInputs(**values))
    assert score is None
    assert [(p.field, p.reason) for p in problems] == [(missing, f"missing input: {missing}")]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("impact", 7, "impact must be one of 0.25, 0.5, 1, 2, 3"),
        ("confidence", 120, "confidence must be between 0 and 100"),
        ("confidence", -1, "confidence must be between 0 and 100"),
        ("effort", 0, "effort must be greater than 0"),
        ("effort", -2, "effort must be greater than 0"),
        ("reach", -10, "reach must be 0 or more"),
        ("reach", float("nan"), "reach is not a finite number"),
    ],
)
def test_rice_invalid_input_gives_no_score_and_a_named_problem(field, value, reason):
    values = {"reach": 2000, "impact": 2, "confidence": 80, "effort": 4, field: value}
    score, problems = rice_score(ScoringInputs(**values))
    assert score is None
    assert [(p.field, p.reason) for p in problems] == [(field, reason)]


def test_ice_worked_example_and_confidence_scale():
    # impact 8 x (70 % -> 7) x ease 5 = 280
    score, problems = ice_score(ScoringInputs(impact=8, confidence=70, ease=5))
    assert score == pytest.approx(280.0) and problems == []
    score, problems = ice_score(ScoringInputs(impact=8, confidence=70, ease=11))
    assert score is None and problems[0].field == "ease" and "between 1 and 10" in problems[0].reason
    score, problems = ice_score(ScoringInputs(impact=8, ease=5))
    assert score is None and problems[0].reason == "missing input: confidence"


def test_wsjf_worked_example():
    # (8 + 5 + 3) / 4 = 4
    score, problems = wsjf_score(ScoringInputs(value=8, time_criticality=5, risk_reduction=3, effort=4))
    assert score == pytest.approx(4.0) and problems == []
    score, problems = wsjf_score(ScoringInputs(value=8, risk_reduction=3, effort=4))
    assert score is None and [p.reason for p in problems] == ["missing input: time_criticality"]


@pytest.mark.parametrize(
    ("value", "effort", "quadrant"),
    [
        (5, 4.99, Quadrant.QUICK_WIN),  # value exactly at the threshold counts as high
        (5, 5, Quadrant.BIG_BET),  # effort exactly at the threshold counts as high
        (4.99, 4.99, Quadrant.FILL_IN),
        (4.99, 5, Quadrant.TIME_SINK),
        (10, 1, Quadrant.QUICK_WIN),
        (1, 10, Quadrant.TIME_SINK),
    ],
)
def test_value_effort_quadrant_boundaries(value, effort, quadrant):
    score, found, problems = value_effort(ScoringInputs(value=value, effort=effort))
    assert found is quadrant
    assert score == pytest.approx(value / effort)
    assert problems == []


def test_value_effort_thresholds_are_parameters():
    inputs = ScoringInputs(value=6, effort=3)
    assert value_effort(inputs)[1] is Quadrant.QUICK_WIN
    assert value_effort(inputs, value_threshold=7)[1] is Quadrant.FILL_IN
    assert value_effort(inputs, effort_threshold=3)[1] is Quadrant.BIG_BET
    item = _item("1", inputs={"value": 6, "effort": 3})
    assert score_item(item, "value_effort", value_threshold=7).quadrant is Quadrant.FILL_IN
    with pytest.raises(TypeError, match="value_treshold"):
        score_item(item, Method.VALUE_EFFORT, value_treshold=7)


def test_score_is_rounded_and_carries_method_and_problems():
    item = _item("1", inputs={"reach": 1, "impact": 1, "confidence": 33, "effort": 1})
    scored = score_items([item], Method.RICE)[0]
    assert scored.score == 0.33 and scored.method is Method.RICE and scored.rank == 1
    broken = score_items([_item("2", inputs={"reach": 1})], "rice")[0]
    assert broken.score is None and broken.rank is None
    assert {p.field for p in broken.problems} == {"impact", "confidence", "effort"}


def test_tie_breaks_in_documented_order():
    same = {"reach": 100, "impact": 1, "effort": 1}
    # All score 50 except "top"; each pair below differs only in the next tie-break.
    items = [
        _item("top", "MKT-1", inputs={**same, "confidence": 100, "reach": 1000}),
        _item("conf-high", "MKT-2", inputs={**same, "reach": 62.5, "confidence": 80}),  # 50, confidence 80
        _item("due-late", "MKT-3", inputs={**same, "confidence": 50}, due_date=date(2026, 6, 1)),
        _item("due-early", "MKT-4", inputs={**same, "confidence": 50}, due_date=date(2026, 5, 1)),
        _item(
            "no-due-new",
            "MKT-5",
            inputs={**same, "confidence": 50},
            created_at=datetime(2026, 2, 1, tzinfo=UTC),
        ),
        _item(
            "no-due-old",
            "MKT-6",
            inputs={**same, "confidence": 50},
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
        ),
        _item("key-10", "MKT-10", inputs={**same, "confidence": 50}),
        _item("key-9", "MKT-9", inputs={**same, "confidence": 50}),
        _item("unscored", "MKT-0", inputs={"reach": 1}),
    ]
    ranked = score_items(items, Method.RICE)
    assert [entry.external_id for entry in ranked] == [
        "top",
        "conf-high",
        "due-early",
        "due-late",
        "no-due-old",
        "no-due-new",
        "key-9",
        "key-10",
        "unscored",
    ]
    assert [entry.rank for entry in ranked] == [1, 2, 3, 4, 5, 6, 7, 8, None]


def test_naive_and_aware_creation_times_do_not_break_ranking():
    items = [
        _item("a", inputs={"value": 1, "effort": 1}, created_at=datetime(2026, 1, 2)),
        _item("b", inputs={"value": 1, "effort": 1}, created_at=datetime(2026, 1, 1, tzinfo=UTC)),
    ]
    assert [entry.external_id for entry in score_items(items, "value_effort")] == ["b", "a"]


finite = (
    st.floats(min_value=-5, max_value=5000, allow_nan=False)
    | st.none()
    | st.sampled_from([0.25, 0.5, 1, 2, 3])
)
any_number = st.floats(allow_nan=True, allow_infinity=True) | st.none()
inputs_strategy = st.builds(
    ScoringInputs,
    reach=finite,
    impact=finite,
    confidence=finite,
    effort=finite,
    value=finite,
    time_criticality=finite,
    risk_reduction=finite,
    ease=finite,
)
items_strategy = st.lists(
    st.builds(
        lambda index, inputs, due, key: BacklogItem(
            source="s", external_id=f"id-{index}", key=key, title="t", inputs=inputs, due_date=due
        ),
        st.integers(0, 10_000),
        inputs_strategy,
        st.none() | st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 1, 5)),
        st.none() | st.sampled_from(["MKT-1", "MKT-2", "MKT-10"]),
    ),
    max_size=12,
    unique_by=lambda item: item.external_id,
)


@settings(max_examples=150, deadline=None)
@given(items_strategy, st.sampled_from(list(Method)), st.randoms(use_true_random=False))
def test_ranking_is_a_permutation_and_stable_under_shuffling(items, method, rnd):
    ranked = score_items(items, method)
    scored = [entry for entry in ranked if entry.score is not None]
    assert sorted(entry.rank for entry in scored) == list(range(1, len(scored) + 1))
    assert all(entry.rank is None for entry in ranked if entry.score is None)
    assert [entry.rank for entry in ranked[: len(scored)]] == list(range(1, len(scored) + 1))
    scores = [entry.score for entry in scored]
    assert scores == sorted(scores, reverse=True)
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert score_items(shuffled, method) == ranked


@settings(max_examples=200, deadline=None)
@given(
    st.builds(
        ScoringInputs,
        reach=any_number,
        impact=any_number,
        confidence=any_number,
        effort=any_number,
        value=any_number,
        time_criticality=any_number,
        risk_reduction=any_number,
        ease=any_number,
    )
)
def test_methods_never_crash_and_score_xor_problems(inputs):
    for method in (rice_score, ice_score, wsjf_score):
        score, problems = method(inputs)
        assert (score is None) == bool(problems)
    score, quadrant, problems = value_effort(inputs)
    assert (score is None) == bool(problems)
    assert quadrant is None or isinstance(quadrant, Quadrant)


def test_overflowing_score_is_a_named_problem():
    score, problems = wsjf_score(
        ScoringInputs(value=1e308, time_criticality=1e308, risk_reduction=0, effort=1)
    )
    assert score is None and [p.field for p in problems] == ["score"]


def test_rank_accepts_precomputed_pairs():
    first, second = _item("x", inputs={"value": 2, "effort": 1}), _item("y", inputs={"value": 9, "effort": 1})
    pairs = [(item, score_item(item, Method.VALUE_EFFORT)) for item in (first, second)]
    random.Random(1).shuffle(pairs)
    assert [(entry.external_id, entry.rank) for entry in rank(pairs)] == [("y", 1), ("x", 2)]


def test_the_rescoring_jobs_slotted_inputs_hold_every_scoring_input() -> None:
    # service.scoring_job reads stored inputs into a slotted copy of ScoringInputs (for speed): an input added
    # to the model but not to the copy would never reach the scoring engine.
    from dataclasses import fields

    from service.scoring_job import _Inputs

    assert [f.name for f in fields(_Inputs)] == list(ScoringInputs.model_fields)
    stored = ScoringInputs(reach=1, impact=2, confidence=3, effort=4, value=5, time_criticality=6,
                           risk_reduction=7, ease=8, reach_derived=True).model_dump()
    read = _Inputs.stored(stored)
    assert {name: getattr(read, name) for name in ScoringInputs.model_fields} == stored
