"""Seed data of the emulated Asana workspace: an English and a French marketing project, their sections and custom
fields, and tasks written the way marketing teams write them (user-story notes, a few odd values)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

EN_PROJECT = "1201000000000001"
FR_PROJECT = "1201000000000002"

USERS = [
    {"gid": "1100000000000101", "name": "Camille Martin"},
    {"gid": "1100000000000102", "name": "Alex Johnson"},
    {"gid": "1100000000000103", "name": "Inès Moreau"},
]

TYPE_OPTIONS = ["Feature", "Experiment", "Campaign", "Content", "Technical",
                "Fonctionnalité", "Expérience", "Campagne", "Contenu", "Technique"]

CUSTOM_FIELDS: list[dict[str, Any]] = [
    {"gid": "1202000000000001", "name": "Type", "resource_subtype": "enum", "options": TYPE_OPTIONS},
    {"gid": "1202000000000002", "name": "Reach", "resource_subtype": "number", "precision": 0},
    {"gid": "1202000000000003", "name": "Impact", "resource_subtype": "number", "precision": 2},
    {"gid": "1202000000000004", "name": "Confidence", "resource_subtype": "number", "precision": 0},
    {"gid": "1202000000000005", "name": "Effort", "resource_subtype": "number", "precision": 1},
    {"gid": "1202000000000006", "name": "Portée", "resource_subtype": "number", "precision": 0},
    {"gid": "1202000000000007", "name": "Confiance", "resource_subtype": "number", "precision": 0},
    {"gid": "1202000000000008", "name": "Channel", "resource_subtype": "text"},
    {"gid": "1202000000000009", "name": "Canal de diffusion", "resource_subtype": "text"},
    {"gid": "1202000000000010", "name": "Target segment", "resource_subtype": "text"},
    {"gid": "1202000000000011", "name": "Segment cible", "resource_subtype": "text"},
    {"gid": "1202000000000012", "name": "Hypothesis", "resource_subtype": "text"},
    {"gid": "1202000000000013", "name": "Marketing score", "resource_subtype": "number", "precision": 2},
    {"gid": "1202000000000014", "name": "Marketing rank", "resource_subtype": "number", "precision": 0},
]
_F = {spec["name"]: spec["gid"] for spec in CUSTOM_FIELDS}

PROJECTS: list[dict[str, Any]] = [
    {"gid": EN_PROJECT, "name": "Marketing backlog", "sections": ["Backlog", "To Do", "In Progress", "Done"],
     "fields": [_F[n] for n in ("Type", "Reach", "Impact", "Confidence", "Effort", "Channel", "Target segment",
                                "Hypothesis", "Marketing score", "Marketing rank")]},
    {"gid": FR_PROJECT, "name": "Backlog marketing", "sections": ["Idées", "À faire", "En cours", "Terminé"],
     "fields": [_F[n] for n in ("Type", "Portée", "Impact", "Confiance", "Effort", "Canal de diffusion",
                                "Segment cible", "Marketing score", "Marketing rank")]},
]


@dataclass
class SeedTask:
    name: str
    sections: dict[str, str]  # project gid -> section name
    fields: dict[str, Any]  # custom field name -> value (enum: option name)
    notes: str = ""
    tags: list[str] = field(default_factory=list)
    assignee: str | None = None
    due_on: date | None = None
    completed: bool = False
    age_days: int = 10
    gid: str | None = None


def _en(reach: Any, impact: Any, confidence: Any, effort: Any) -> dict[str, Any]:
    return {"Reach": reach, "Impact": impact, "Confidence": confidence, "Effort": effort}


def _fr(reach: Any, impact: Any, confidence: Any, effort: Any) -> dict[str, Any]:
    return {"Portée": reach, "Impact": impact, "Confiance": confidence, "Effort": effort}


EN_STORY = """As a {role}
I want {want}
So that {so_that}
Channel: {channel}
Target segment: {segment}
KPI: {kpi}
Hypothesis: {hypothesis}"""

FR_STORY = """En tant que {role}
Je veux {want}
Afin de {so_that}
Canal de diffusion : {channel}
Segment cible : {segment}
Indicateur clé de performance (KPI) : {kpi}
Hypothèse à tester : {hypothesis}"""


def seed_tasks() -> list[SeedTask]:
    """The seeded backlog: 14 English tasks, 10 French ones, one task in both projects."""
    en, fr = EN_PROJECT, FR_PROJECT
    people = [u["gid"] for u in USERS]
    tasks = [
        SeedTask("Spring newsletter campaign", {en: "To Do"},
                 {**_en(12000, 2, 80, 3), "Type": "Campaign", "Channel": "Email"},
                 EN_STORY.format(role="newsletter subscriber", want="a spring offer in my inbox",
                                 so_that="I buy before the season starts", channel="Email",
                                 segment="Subscribers active in the last 90 days", kpi="newsletter-revenue",
                                 hypothesis="A seasonal offer lifts click-through by 15%"),
                 tags=["campaign"], assignee=people[1], due_on=date(2027, 3, 1)),
        SeedTask("A/B test the pricing page headline", {en: "In Progress"},
                 {**_en(8000, 1, 50, 2), "Type": "Experiment"},
                 EN_STORY.format(role="visitor comparing plans", want="a headline that states the benefit",
                                 so_that="I understand which plan fits me", channel="Website",
                                 segment="New visitors on /pricing", kpi="trial-signups",
                                 hypothesis="A benefit headline raises trial sign-ups by 10%"),
                 tags=["ab-test"], assignee=people[0]),
        SeedTask("Fix slow product pages (Core Web Vitals)", {en: "Backlog"},
                 {**_en(30000, 1, 80, 5)}, "Our LCP is 4.2 s on mobile; Google recommends under 2.5 s.",
                 tags=["seo", "performance"]),
        SeedTask("Customer story video: Acme Logistics", {en: "To Do"},
                 {**_en(5000, 2, 60, 4), "Type": "Content", "Target segment": "Logistics prospects"},
                 "As a logistics manager, I want to see a peer's results so that I trust the product.",
                 tags=["video"], assignee=people[1]),
        SeedTask("Launch referral programme", {en: "Backlog"},
                 {**_en(4000, 3, 50, 8), "Type": "Feature", "Hypothesis": "Referrals convert 2x better than ads"},
                 tags=["launch"]),
        SeedTask("Retargeting ads for cart abandoners", {en: "To Do"},
                 {**_en(2500, 1, 80, 1), "Type": "Campaign", "Channel": "Paid social"}),
        SeedTask("Blog series: remote work tips", {en: "Backlog"},
                 {**_en(9000, 0.5, 100, 2), "Type": "Content"}, tags=["blog"]),
        SeedTask("Webinar: Q2 product update", {en: "Done"}, {**_en(1500, 1, 80, 2), "Type": "Campaign"},
                 completed=True),
        SeedTask("Tracking plan for the new signup flow", {en: "In Progress"},
                 {**_en(20000, 0.5, 80, 1), "Type": "Technical"}, tags=["tracking"]),
        # Odd values a team really types: the mapping keeps the task and says what is wrong.
        SeedTask("Chatbot on the contact page", {en: "Backlog"}, {**_en(None, 1, 50, 3), "Type": "Feature"},
                 "Reach unknown until we see the chat volume."),
        SeedTask("Partner co-marketing with Globex", {en: "Backlog"}, {**_en(3000, 7, 50, 2), "Type": "Campaign"},
                 "Impact typed as 7 (the scale is 0.25 to 3)."),
        SeedTask("Loyalty email for VIP customers", {en: "To Do"}, {**_en(800, 2, 150, 1), "Type": "Campaign"},
                 "Confidence typed as 150."),
        SeedTask("Landing page for the trade fair", {en: "To Do"}, {**_en(2000, 1, 80, 0), "Type": "Feature"},
                 "Effort 0: nobody estimated it yet."),
        SeedTask("Press kit refresh", {en: "Backlog"}, {**_en(600, 0.5, 80, 1)}, tags=["unknown-tag"]),
        # French project.
        SeedTask("Audit SEO des pages catégories", {fr: "À faire"}, {**_fr(25000, 2, 80, 3), "Type": "Technique"},
                 FR_STORY.format(role="responsable SEO", want="corriger les balises des pages catégories",
                                 so_that="gagner du trafic organique", channel="Recherche organique",
                                 segment="Visiteurs Google France", kpi="organic-sessions",
                                 hypothesis="Des balises propres apportent +20 % de sessions"),
                 tags=["seo"], assignee=people[2]),
        SeedTask("Campagne soldes d'été", {fr: "En cours"},
                 {**_fr(15000, 2, 80, 2), "Type": "Campagne", "Canal de diffusion": "E-mail"},
                 FR_STORY.format(role="client fidèle", want="recevoir les soldes en avant-première",
                                 so_that="profiter des meilleures offres", channel="E-mail",
                                 segment="Clients ayant acheté en 2026", kpi="summer-sales",
                                 hypothesis="L'avant-première augmente le panier moyen de 8 %"),
                 tags=["promo"], due_on=date(2027, 6, 20)),
        SeedTask("Test A/B du bouton d'inscription", {fr: "Idées"}, {**_fr(6000, 1, 50, 1), "Type": "Expérience"},
                 "En tant que visiteur, je souhaite un bouton visible afin de m'inscrire sans chercher.",
                 tags=["ab-test"]),
        SeedTask("Guide pratique : réussir son onboarding", {fr: "Idées"},
                 {**_fr(4000, 1, 80, 3), "Type": "Contenu", "Segment cible": "Nouveaux clients"}, tags=["blog"]),
        SeedTask("Programme ambassadeurs", {fr: "Idées"}, {**_fr(1200, 3, 50, 8), "Type": "Fonctionnalité"}),
        SeedTask("Vidéo témoignage client", {fr: "Terminé"}, {**_fr(3000, 1, 80, 2), "Type": "Contenu"},
                 completed=True),
        SeedTask("Refonte de la page tarifs", {fr: "À faire"}, {**_fr(9000, 2, 80, 5), "Type": "Fonctionnalité"}),
        SeedTask("Salon professionnel de Lyon", {fr: "À faire"}, {**_fr(700, 1, 60, None), "Type": "Campagne"},
                 "Effort pas encore estimé."),
        SeedTask("Podcast marketing mensuel", {fr: "Idées"}, {**_fr(2000, 0.25, 50, 2), "Type": "Contenu"}),
        # One task lives in both projects: it is one item.
        SeedTask("Brand guidelines update / Mise à jour de la charte", {en: "Backlog", fr: "Idées"},
                 {**_en(1000, 1, 80, 2), **_fr(1000, 1, 80, 2), "Type": "Content"}),
    ]
    for index, task in enumerate(tasks):
        task.gid = str(1203000000000001 + index)
        task.age_days = 30 - index
    return tasks


def generated_task(n: int, project: str, sections: list[str]) -> SeedTask:
    """A generated marketing task for benchmarks: ~1 KB of notes, a full set of inputs."""
    notes = EN_STORY.format(role=f"marketing persona {n % 17}", want=f"offer variant {n}",
                            so_that="the campaign converts better", channel=["Email", "Website", "Paid social"][n % 3],
                            segment=f"Segment {n % 11}", kpi="trial-signups",
                            hypothesis=f"Variant {n} lifts conversion by {n % 20 + 1}%")
    english = project == EN_PROJECT
    inputs = _en if english else _fr
    return SeedTask(
        name=f"Generated marketing task {n}",
        sections={project: sections[n % len(sections)]},
        fields={**inputs(1000 + n % 5000, [0.25, 0.5, 1, 2, 3][n % 5], [50, 80, 100][n % 3], 1 + n % 8),
                "Type": ["Campaign", "Experiment", "Content", "Feature", "Technical"][n % 5]} if english else
               {**inputs(1000 + n % 5000, [0.25, 0.5, 1, 2, 3][n % 5], [50, 80, 100][n % 3], 1 + n % 8),
                "Type": ["Campagne", "Expérience", "Contenu", "Fonctionnalité", "Technique"][n % 5]},
        notes=notes * 2, tags=[["campaign"], ["ab-test"], ["blog"], [], ["seo"]][n % 5], age_days=n % 300,
    )
