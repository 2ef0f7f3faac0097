"""The KPI result text (English, French), linking items to objectives, the page an item names, and when a
result counts as changed enough to be written again."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from mappings.kpi_text import KpiResult, kpi_field_text, kpi_result_text
from service.kpi.job import materially_changed
from service.kpi.links import (
    linked_objectives,
    match_dimension_value,
    named_page,
    named_value,
    normalise_name,
    objective_names,
)
from service.tables import KpiItemResultRow

RESULT = KpiResult(
    objective_key="email-leads", objective_name="Email leads", milestone="Q4", milestone_start=date(2026, 10, 1),
    milestone_end=date(2026, 12, 31), milestone_target=0.40, milestone_actual=3536, milestone_expected=3400,
    milestone_status="on_track", actual=16114, expected=16500, status="at_risk", expected_total=20000,
    projection=19500, as_of=date(2026, 11, 30), milestone_attainment=3536 / 3400, attainment=16114 / 16500)


def test_english_text() -> None:
    # 3,536 / 3,400 = 104.0 %; 16,114 / 16,500 = 97.66 % -> 97.7 %
    assert kpi_result_text(RESULT, "en") == "\n".join([
        'KPI "Email leads" (email-leads), as of 2026-11-30:',
        "- Milestone Q4 (2026-10-01 to 2026-12-31, target +40.0%): 3,536 vs 3,400 expected to date (104.0%), "
        "on track.",
        "- Window to date: 16,114 vs 16,500 expected (97.7%), at risk.",
        "- Target for the window: 20,000; projected: 19,500.",
        "(written by backlog-sync)",
    ])


def test_french_text_uses_french_numbers_and_words() -> None:
    nb, pct = "\u202f", "\u00a0%"  # thousands: narrow no-break space; before %: no-break space
    assert kpi_result_text(RESULT, "fr") == "\n".join([
        "KPI « Email leads » (email-leads), au 2026-11-30 :",
        f"- Jalon T4 (2026-10-01 → 2026-12-31, objectif +40,0{pct}) : 3{nb}536 pour 3{nb}400 attendus à date "
        f"(104,0{pct}), en bonne voie.",
        f"- Depuis le début : 16{nb}114 pour 16{nb}500 attendus (97,7{pct}), à risque.",
        f"- Objectif de la période : 20{nb}000 ; projection : 19{nb}500.",
        "(écrit par backlog-sync)",
    ])


def test_the_text_shows_the_attainment_it_is_given_for_a_decrease_target() -> None:
    # -10 % bounces: 900 against 1,000 expected is better than planned, 1,000 / 900 = 111.1 %, on track.
    lower = replace(RESULT, milestone_actual=900, milestone_expected=1000, milestone_attainment=1000 / 900,
                    milestone_status="on_track", actual=5000, expected=4000, attainment=4000 / 5000,
                    status="off_track")
    text = kpi_result_text(lower, "en")
    assert "900 vs 1,000 expected to date (111.1%), on track." in text
    assert "5,000 vs 4,000 expected (80.0%), off track." in text
    # A result stored before attainments were kept shows no ratio rather than a wrong one.
    older = replace(lower, milestone_attainment=None, attainment=None)
    assert "900 vs 1,000 expected to date, on track." in kpi_result_text(older, "en")


def test_the_field_lists_every_linked_objective_by_key() -> None:
    other = replace(RESULT, objective_key="a-first", objective_name="First")
    text = kpi_field_text([RESULT, other], "en")
    assert text.index('"First"') < text.index('"Email leads"')


def test_names_match_case_accent_and_punctuation_insensitively() -> None:
    assert normalise_name("Email-Leads") == normalise_name("email leads") == normalise_name("EMAIL_LEADS")
    assert normalise_name("Génération de leads") == "generation de leads"


NAMES = {"email-leads": objective_names("email-leads", "Email lead generation +40% YoY", ["leads e-mail"]),
         "organic-traffic": objective_names("organic-traffic", "Organic traffic")}


def test_items_link_by_kpi_field_alias_or_label() -> None:
    assert linked_objectives({"kpi": "Email leads"}, [], NAMES) == ["email-leads"]
    assert linked_objectives({"kpi": "Leads E-mail"}, [], NAMES) == ["email-leads"]  # an alias
    assert linked_objectives({"kpi": "EMAIL_LEADS, organic-traffic"}, [], NAMES) == ["email-leads",
                                                                                     "organic-traffic"]
    assert linked_objectives({}, ["seo", "kpi:Organic-Traffic"], NAMES) == ["organic-traffic"]
    assert linked_objectives({"kpi": "leads"}, ["kpi"], NAMES) == []  # no partial matches
    assert linked_objectives(None, None, NAMES) == []


def test_the_page_an_item_names() -> None:
    assert named_page(["seo", "page:/landing/spring-sale"], None, label_prefix="page:") == "/landing/spring-sale"
    described = "Redesign the form.\nTarget page: https://acme.example/newsletter?utm_source=x.\nMore."
    assert named_page([], described, label_prefix="page:") == "/newsletter"
    assert named_page([], "Page cible : /blog/seo-checklist", label_prefix="page:") == "/blog/seo-checklist"
    assert named_page(["landing"], "no page here", label_prefix="page:") is None
    assert named_value("channel", {"channel": " Email "}, [], None, label_prefix="page:") == "Email"


def test_matching_ga4_rows() -> None:
    assert match_dimension_value("/newsletter/", {"/newsletter": 5.0}, kind="page") == 5.0
    assert match_dimension_value("/pricing", {"/newsletter": 5.0}, kind="page") is None
    assert match_dimension_value("email", {"Email": 3.0, "Direct": 9.0}, kind="channel") == 3.0


def _previous(attainment: float, **kw: str) -> KpiItemResultRow:
    values = {"milestone": "Q4", "status": "at_risk", "milestone_status": "on_track", **kw}
    return KpiItemResultRow(source="mkt", external_id="1", objective_key="email-leads", attainment=attainment,
                            text="", **values)


def test_only_a_material_change_is_written_again() -> None:
    # RESULT's attainment is 3,536 / 3,400 = 1.04; 5 % of 1.0 is 0.05
    assert not materially_changed(_previous(1.0), RESULT, 0.05)
    assert materially_changed(_previous(0.98), RESULT, 0.05)  # 1.04 - 0.98 = 0.06 > 0.049
    assert materially_changed(_previous(1.04, status="on_track"), RESULT, 0.05)  # the window's status changed
    assert materially_changed(_previous(1.04, milestone="Q3"), RESULT, 0.05)  # a new quarter
    assert not materially_changed(_previous(3536 / 3400), RESULT, 0.0)  # the same value, even at threshold 0
