"""The objective arithmetic, with expectations worked out by hand: milestone split, expected to date, status,
projection, and the seed's +40 % email leads example on a flat series."""

from __future__ import annotations

from datetime import date

import pytest

from service.kpi.expression import MetricExpression
from service.kpi.progress import (
    AT_RISK,
    NOT_STARTED,
    OFF_TRACK,
    ON_TRACK,
    Plan,
    build_milestones,
    compute_progress,
    days_between,
    milestone_periods,
    milestone_uplifts,
    relative_target,
    status_for,
    years_earlier,
)

JAN1, DEC31 = date(2026, 1, 1), date(2026, 12, 31)


def test_plus_forty_percent_a_year_is_ten_points_a_quarter() -> None:
    assert milestone_uplifts(0.40, 4, "linear") == pytest.approx([0.10, 0.20, 0.30, 0.40])


def test_compound_split_multiplies_to_the_target() -> None:
    # 1.4 ** 0.25 = sqrt(sqrt(1.4)) = sqrt(1.183216) = 1.087757; 1.4 ** 0.75 = 1.183216 * 1.087757 = 1.287052
    assert milestone_uplifts(0.40, 4, "compound") == pytest.approx([0.087757, 0.183216, 0.287052, 0.40], abs=1e-5)


def test_even_split_holds_every_milestone_to_the_whole_target() -> None:
    assert milestone_uplifts(0.40, 4, "even") == [0.40, 0.40, 0.40, 0.40]


def test_even_split_makes_the_window_total_the_absolute_target() -> None:
    # Baseline 2025: 10 a day (3,650). An absolute target of 5,110 for 2026 is +40 %; split evenly, the window's
    # expected total is 3,650 * 1.4 = 5,110 again; linear expects 10 * (90 * 1.1 + 91 * 1.2 + 92 * 1.3 + 92 * 1.4)
    # = 10 * (99 + 109.2 + 119.6 + 128.8) = 4,566 for the year: the growth reaches +40 % only in Q4.
    baseline = _flat(days_between(date(2025, 1, 1), date(2025, 12, 31)), eventCount=10.0)
    uplift = relative_target(5110, 3650)
    assert uplift == pytest.approx(0.40)
    for split, total in (("even", 5110.0), ("linear", 4566.0)):
        plan = Plan(start=JAN1, end=DEC31, expression=MetricExpression.parse("eventCount"),
                    milestones=build_milestones(JAN1, DEC31, "quarterly", uplift, split))
        progress = compute_progress(plan, {}, baseline, as_of=date(2026, 6, 30))
        assert progress.expected_total == pytest.approx(total), split


def test_monthly_split_of_forty_percent() -> None:
    uplifts = milestone_uplifts(0.40, 12, "linear")
    assert uplifts[0] == pytest.approx(0.40 / 12)  # +3.33 % in January
    assert uplifts[5] == pytest.approx(0.20)  # +20 % by June
    assert uplifts[11] == pytest.approx(0.40)


def test_quarters_of_a_calendar_year() -> None:
    assert milestone_periods(JAN1, DEC31, "quarterly") == [
        (date(2026, 1, 1), date(2026, 3, 31)), (date(2026, 4, 1), date(2026, 6, 30)),
        (date(2026, 7, 1), date(2026, 9, 30)), (date(2026, 10, 1), date(2026, 12, 31))]


def test_months_from_the_31st_do_not_drift() -> None:
    periods = milestone_periods(date(2026, 1, 31), date(2026, 5, 30), "monthly")
    # 31 Jan + 1 month = 28 Feb (clamped); + 2 months = 31 Mar (counted from the start, not from 28 Feb)
    assert periods == [(date(2026, 1, 31), date(2026, 2, 27)), (date(2026, 2, 28), date(2026, 3, 30)),
                       (date(2026, 3, 31), date(2026, 4, 29)), (date(2026, 4, 30), date(2026, 5, 30))]


def test_a_window_that_is_not_a_whole_number_of_quarters_ends_with_a_short_one() -> None:
    periods = milestone_periods(date(2026, 1, 1), date(2026, 8, 15), "quarterly")
    assert periods[-1] == (date(2026, 7, 1), date(2026, 8, 15))


@pytest.mark.parametrize(("ratio", "status"), [
    (1.2, ON_TRACK), (1.0, ON_TRACK), (0.95, AT_RISK), (0.9, AT_RISK), (0.8999, OFF_TRACK), (None, NOT_STARTED)])
def test_status_thresholds(ratio: float | None, status: str) -> None:
    assert status_for(ratio, on_track=1.0, at_risk=0.9) == status


def test_targets_relative_and_absolute() -> None:
    assert relative_target("+40%", 36_500) == pytest.approx(0.40)
    assert relative_target("-20%", 36_500) == pytest.approx(-0.20)
    assert relative_target(51_100, 36_500) == pytest.approx(0.40)  # 51,100 / 36,500 = 1.4


def test_leap_day_maps_to_the_28th() -> None:
    assert years_earlier(date(2028, 2, 29), 1) == date(2027, 2, 28)


def _flat(days: list[date], **values: float) -> dict[date, dict[str, float]]:
    return {day: dict(values) for day in days}


def _email_leads_plan(**kw: object) -> Plan:
    milestones = build_milestones(JAN1, DEC31, "quarterly", 0.40, "linear")
    return Plan(start=JAN1, end=DEC31, expression=MetricExpression.parse("eventCount"), milestones=milestones,
                **kw)  # type: ignore[arg-type]


def _growth_series() -> dict[date, dict[str, float]]:
    # 2026 on a 2025 baseline of 100 a day: Q1 +12 %, Q2 +5 %, Q3 +28 %, Q4 +46 %
    per_quarter = {1: 112.0, 2: 105.0, 3: 128.0, 4: 146.0}
    return {day: {"eventCount": per_quarter[(day.month - 1) // 3 + 1]} for day in days_between(JAN1, DEC31)}


def test_seed_example_checked_on_the_first_of_december() -> None:
    baseline = _flat(days_between(date(2025, 1, 1), date(2025, 12, 31)), eventCount=100.0)
    progress = compute_progress(_email_leads_plan(), _growth_series(), baseline, as_of=date(2026, 11, 30))
    q1, q2, q3, q4 = progress.milestones
    # Q1: 90 days (31 + 28 + 31); actual 90 * 112 = 10,080; expected 90 * 100 * 1.10 = 9,900 -> 1.018
    assert (q1.actual, q1.expected_to_date) == pytest.approx((10_080, 9_900))
    assert q1.status == ON_TRACK and q1.complete
    # Q2: 91 days; 91 * 105 = 9,555 vs 9,100 * 1.20 = 10,920 -> 0.875
    assert (q2.actual, q2.expected_to_date) == pytest.approx((9_555, 10_920))
    assert q2.status == OFF_TRACK
    # Q3: 92 days; 92 * 128 = 11,776 vs 9,200 * 1.30 = 11,960 -> 0.985, between 0.9 and 1.0
    assert (q3.actual, q3.expected_to_date) == pytest.approx((11_776, 11_960))
    assert q3.status == AT_RISK
    # Q4 to date: October and November, 61 days; 61 * 146 = 8,906 vs 6,100 * 1.40 = 8,540; whole Q4 9,200 * 1.4
    assert (q4.actual, q4.expected_to_date, q4.expected_total) == pytest.approx((8_906, 8_540, 12_880))
    assert q4.status == ON_TRACK and not q4.complete
    assert progress.current is q4
    # Year to date: 10,080 + 9,555 + 11,776 + 8,906 = 40,317 vs 9,900 + 10,920 + 11,960 + 8,540 = 41,320 -> 0.976
    assert (progress.actual, progress.expected_to_date) == pytest.approx((40_317, 41_320))
    assert progress.status == AT_RISK
    # The year's target 9,900 + 10,920 + 11,960 + 12,880 = 45,660; projection 40,317 + 31 * 100 * 1.4 = 44,657
    assert progress.expected_total == pytest.approx(45_660)
    assert progress.projection == pytest.approx(44_657)
    assert progress.baseline_total == pytest.approx(36_500)


def test_a_baseline_value_is_spread_over_the_window() -> None:
    plan = _email_leads_plan(baseline_value=36_500.0, baseline_years_back=None)
    progress = compute_progress(plan, _growth_series(), {}, as_of=date(2026, 3, 31))
    # 36,500 over 365 days = 100 a day: Q1 expected 90 * 100 * 1.1 = 9,900, as with the 2025 series
    assert progress.milestones[0].expected_to_date == pytest.approx(9_900)
    assert progress.milestones[1].status == NOT_STARTED


def test_before_the_window_nothing_is_expected() -> None:
    progress = compute_progress(_email_leads_plan(), {}, {}, as_of=date(2025, 12, 31))
    assert progress.status == NOT_STARTED and progress.current.milestone.label == "Q1"
    assert progress.actual == 0


def test_a_decrease_target_counts_lower_as_better() -> None:
    milestones = build_milestones(JAN1, DEC31, "quarterly", -0.20, "linear")  # -5 % in Q1
    plan = Plan(start=JAN1, end=DEC31, expression=MetricExpression.parse("eventCount"), milestones=milestones,
                increase=False)
    baseline = _flat(days_between(date(2025, 1, 1), date(2025, 12, 31)), eventCount=100.0)
    actual = _flat(days_between(JAN1, date(2026, 3, 31)), eventCount=85.0)
    progress = compute_progress(plan, actual, baseline, as_of=date(2026, 3, 31))
    # expected 95 a day, actual 85: attainment 95 / 85 = 1.118 -> on track
    assert progress.milestones[0].attainment == pytest.approx(95 / 85)
    assert progress.status == ON_TRACK


def test_a_ratio_expression_is_the_ratio_of_sums() -> None:
    milestones = build_milestones(JAN1, DEC31, "quarterly", 0.40, "linear")
    plan = Plan(start=JAN1, end=DEC31, expression=MetricExpression.parse("keyEvents / sessions"),
                milestones=milestones)
    baseline = _flat(days_between(date(2025, 1, 1), date(2025, 12, 31)), keyEvents=10.0, sessions=200.0)
    actual = {day: {"keyEvents": 12.0 if day.day % 2 else 0.0, "sessions": 200.0}
              for day in days_between(JAN1, date(2026, 3, 31))}
    progress = compute_progress(plan, actual, baseline, as_of=date(2026, 3, 31))
    q1 = progress.milestones[0]
    # odd days of Q1: 16 + 14 + 16 = 46, so keyEvents = 46 * 12 = 552 over 90 * 200 = 18,000 sessions = 0.030667
    assert q1.actual == pytest.approx(552 / 18_000)
    assert q1.expected_to_date == pytest.approx(0.05 * 1.10)  # the baseline rate 10 / 200, +10 %
    assert q1.status == OFF_TRACK  # 0.0307 / 0.055 = 0.56


def test_expressions() -> None:
    assert MetricExpression.parse("eventCount").additive
    assert MetricExpression.parse("2 * eventCount + keyEvents").additive
    ratio = MetricExpression.parse("keyEvents / sessions")
    assert not ratio.additive and ratio.metrics == ("keyEvents", "sessions")
    assert ratio.evaluate({"keyEvents": 5, "sessions": 0}) == 0.0  # no sessions: no rate, not an error
    assert MetricExpression.parse("customEvent:lead_value").metrics == ("customEvent:lead_value",)
    with pytest.raises(ValueError, match="rate or an average"):
        MetricExpression.parse("bounceRate")
    with pytest.raises(ValueError, match="not a GA4 metric"):
        MetricExpression.parse("eventcount")
    with pytest.raises(ValueError, match=r"only metric names"):
        MetricExpression.parse("eventCount ** 2")
    with pytest.raises(ValueError, match="not a metric name or an expression"):
        MetricExpression.parse("eventCount +")
