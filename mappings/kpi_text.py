"""The text of a KPI result written back to a linked item (comment or owned text field), in English or French."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class KpiResult:
    """One objective's result as written to an item: the current milestone and the window to date."""

    objective_key: str
    objective_name: str
    milestone: str  # "Q4"
    milestone_start: date
    milestone_end: date
    milestone_target: float  # the milestone's uplift over the baseline, 0.40 = +40 %
    milestone_actual: float
    milestone_expected: float  # expected to date within the milestone
    milestone_status: str  # on_track | at_risk | off_track | not_started
    actual: float  # the window to date
    expected: float
    status: str
    expected_total: float  # the target for the whole window
    projection: float
    as_of: date
    # Attainments as the progress computed them (expected / actual when the target lowers the metric), so the
    # text agrees with the status; None when not known (a result stored before they were kept).
    milestone_attainment: float | None = None
    attainment: float | None = None


_STATUS = {
    "en": {"on_track": "on track", "at_risk": "at risk", "off_track": "off track", "not_started": "not started"},
    "fr": {"on_track": "en bonne voie", "at_risk": "à risque", "off_track": "en retard",
           "not_started": "pas commencé"},
}


def _number(value: float, language: str) -> str:
    """1234.5 -> '1,235' (en) or '1 235' (fr, with a narrow no-break space); small values keep decimals."""
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"
    return text.replace(",", "\u202f").replace(".", ",") if language == "fr" else text


def _percent(ratio: float, language: str, *, signed: bool = False) -> str:
    text = f"{ratio * 100:+.1f}" if signed else f"{ratio * 100:.1f}"
    return (text.replace(".", ",") + "\u00a0%") if language == "fr" else text + "%"


def kpi_result_text(result: KpiResult, language: str) -> str:
    """Builds the result text: objective, milestone (actual vs expected to date, status), window to date."""
    statuses = _STATUS.get(language, _STATUS["en"])
    n = lambda value: _number(value, language)  # noqa: E731 - a local shorthand keeps the sentences readable
    p = lambda ratio, signed=False: _percent(ratio, language, signed=signed)  # noqa: E731
    m_ratio = "" if result.milestone_attainment is None else f" ({p(result.milestone_attainment)})"
    y_ratio = "" if result.attainment is None else f" ({p(result.attainment)})"
    if language == "fr":
        return "\n".join([
            f"KPI « {result.objective_name} » ({result.objective_key}), au {result.as_of.isoformat()} :",
            f"- Jalon {result.milestone.replace('Q', 'T')} ({result.milestone_start.isoformat()} → "
            f"{result.milestone_end.isoformat()}, objectif {p(result.milestone_target, True)}) : "
            f"{n(result.milestone_actual)} pour {n(result.milestone_expected)} attendus à date"
            f"{m_ratio}, {statuses[result.milestone_status]}.",
            f"- Depuis le début : {n(result.actual)} pour {n(result.expected)} attendus{y_ratio}, "
            f"{statuses[result.status]}.",
            f"- Objectif de la période : {n(result.expected_total)} ; projection : {n(result.projection)}.",
            "(écrit par backlog-sync)",
        ])
    return "\n".join([
        f"KPI \"{result.objective_name}\" ({result.objective_key}), as of {result.as_of.isoformat()}:",
        f"- Milestone {result.milestone} ({result.milestone_start.isoformat()} to {result.milestone_end.isoformat()}, "
        f"target {p(result.milestone_target, True)}): {n(result.milestone_actual)} vs "
        f"{n(result.milestone_expected)} expected to date{m_ratio}, {statuses[result.milestone_status]}.",
        f"- Window to date: {n(result.actual)} vs {n(result.expected)} expected{y_ratio}, "
        f"{statuses[result.status]}.",
        f"- Target for the window: {n(result.expected_total)}; projected: {n(result.projection)}.",
        "(written by backlog-sync)",
    ])


def kpi_field_text(results: list[KpiResult], language: str) -> str:
    """The owned KPI text field of an item linked to one or more objectives: each result, by objective key."""
    return "\n\n".join(kpi_result_text(result, language) for result in sorted(results, key=lambda r: r.objective_key))
