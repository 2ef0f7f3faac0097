"""The emulated Trello's seeded boards: the seed articles' marketing backlog on an English and a French board,
with lists named as teams name them, labels that decide the item type, custom fields for the scoring inputs and
story fields, a few odd values, and a generator of realistic cards for benchmarks.

Custom field values are given as a person would type them; the server stores them the way Trello does (strings).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

MEMBERS = [("Camille Durand", "camilledurand"), ("Léa Martin", "leamartin"), ("Sam Okafor", "samokafor"),
           ("Mia Krystof", "miakrystof")]

# (name, type, list options) of each board's custom fields; "Marketing score"/"Marketing rank" are ours.
EN_FIELDS: list[tuple[str, str, list[str]]] = [
    ("Reach", "number", []), ("Impact", "list", ["0.25", "0.5", "1", "2", "3"]), ("Confidence", "number", []),
    ("Effort", "number", []), ("Business value", "number", []), ("Time criticality", "number", []),
    ("Risk reduction", "number", []), ("Ease", "number", []),
    ("Channel", "list", ["Organic search", "Email", "Social", "TikTok", "Website", "Paid search"]),
    ("Target segment", "text", []), ("KPI", "text", []), ("Hypothesis", "text", []),
    ("Launch blocker", "checkbox", []), ("Marketing score", "number", []), ("Marketing rank", "number", []),
]
FR_FIELDS: list[tuple[str, str, list[str]]] = [
    ("Portée", "number", []), ("Impact", "list", ["0.25", "0.5", "1", "2", "3"]), ("Confiance", "number", []),
    ("Effort", "number", []), ("Valeur métier", "number", []),
    ("Canal de diffusion", "list", ["Recherche organique", "E-mail", "Réseaux sociaux", "TikTok", "Site web"]),
    ("Segment cible", "text", []), ("Indicateur clé de performance", "text", []), ("Hypothèse à tester", "text", []),
    ("Marketing score", "number", []), ("Marketing rank", "number", []),
]


@dataclass
class SeedCard:
    name: str
    list_name: str
    desc: str = ""
    labels: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)  # custom field name -> value as typed
    member: int | None = None
    due: str | None = None


@dataclass
class SeedBoard:
    name: str
    short_link: str
    lists: list[str]
    labels: list[tuple[str, str]]  # (name, color)
    fields: list[tuple[str, str, list[str]]]
    cards: list[SeedCard]


def _en(role: str, want: str, so_that: str, criteria: list[str]) -> str:
    lines = [f"As a: {role}", f"I want: {want}", f"So that: {so_that}", "", "Acceptance criteria:"]
    return "\n".join(lines + [f"- {c}" for c in criteria])


def _fr(role: str, want: str, so_that: str, criteria: list[str]) -> str:
    lines = [f"En tant que : {role}", f"Je veux : {want}", f"Afin de : {so_that}", "", "Critères d'acceptation :"]
    return "\n".join(lines + [f"- {c}" for c in criteria])


def seed_boards() -> list[SeedBoard]:
    """Two boards: "Marketing backlog" (English, 12 cards) and "Backlog marketing" (French, 10 cards)."""
    en = SeedBoard(
        "Marketing backlog", "MkTgBkLg", ["Ideas", "To Do", "Doing", "Review", "Done", "Parking lot"],
        [("SEO", "green"), ("A/B test", "purple"), ("Campaign", "red"), ("Content", "blue"), ("Feature", "orange"),
         ("Video", "sky"), ("Tracking", "black")],
        EN_FIELDS,
        [
            SeedCard("Optimise title tags and meta descriptions of the strategic pages", "To Do",
                     _en("SEO lead", "optimise the title tags and meta descriptions of our strategic pages",
                         "we rank higher in search results",
                         ["The 20 strategic pages have a title under 60 characters"]),
                     ["SEO"], {"Reach": 4000, "Impact": "2", "Confidence": 80, "Effort": 3, "Business value": 7,
                               "Channel": "Organic search", "KPI": "organic-traffic",
                               "Hypothesis": "a shorter, descriptive title raises the click-through rate"}, 0),
            SeedCard("Short TikTok videos for the new features", "Ideas",
                     _en("social media specialist", "a series of short videos showing the new features",
                         "younger prospects discover the product", ["Five videos of under 30 seconds"]),
                     ["Content", "Video"], {"Reach": 12000, "Impact": "1", "Confidence": 50, "Effort": 5,
                                            "Channel": "TikTok", "Target segment": "18-24 year olds"}, 2),
            SeedCard("Landing page A/B test: headline and call to action", "Doing",
                     _en("online advertising manager", "an A/B test of the landing page headline and button",
                         "more visitors start a trial", ["Two variants, 50/50 traffic, two weeks"]),
                     ["A/B test"], {"Reach": 8000, "Impact": "2", "Confidence": 80, "Effort": 2,
                                    "Hypothesis": "a benefit-led headline converts better",
                                    "KPI": "conversion-rate"}, 1, "2026-12-15"),
            SeedCard("Newsletter sign-up form in the blog sidebar", "To Do",
                     _en("email marketer", "a sign-up form beside every blog post", "the newsletter list grows",
                         ["Double opt-in", "Sign-ups tracked as a GA4 event"]),
                     ["Feature"], {"Reach": 3000, "Impact": "1", "Confidence": 100, "Effort": 1,
                                   "Channel": "Email", "KPI": "email-leads"}, 3),
            SeedCard("Seasonal promotion: winter sale campaign", "Ideas",
                     _en("campaign manager", "a winter sale across email, social and the website",
                         "December revenue beats last year's", ["Landing page, three emails, social posts"]),
                     ["Campaign"], {"Reach": 20000, "Impact": "3", "Confidence": 50, "Effort": 8,
                                    "Time criticality": 9, "Launch blocker": True}, None, "2026-12-01"),
            SeedCard("Blog series: ten customer stories", "Review",
                     _en("content marketer", "ten blog posts telling customer stories",
                         "prospects see the product at work", ["One post a week", "Each with a quote"]),
                     ["Content"], {"Reach": 5000, "Impact": "1", "Confidence": 80, "Effort": 4}, 0),
            SeedCard("Fix the GA4 purchase event on the checkout", "Done",
                     "The purchase event fires twice on the confirmation page.",
                     ["Tracking"], {"Reach": 9000, "Impact": "2", "Confidence": 100, "Effort": 1}, 3),
            # Odd values a real board holds: they are reported as problems, never guessed.
            SeedCard("Chatbot on the pricing page", "Ideas", "Answer pricing questions at once.",
                     ["Feature"], {"Reach": "lots", "Impact": "1", "Confidence": 50, "Effort": 3}),
            SeedCard("Webinar with a partner agency", "To Do", "", ["Campaign"],
                     {"Reach": 1500, "Impact": "2", "Confidence": 150, "Effort": 2}),
            SeedCard("Referral programme", "Parking lot", "An idea parked until the next quarter.", [],
                     {"Reach": 2500, "Impact": "1", "Confidence": 50, "Effort": 6}),
            SeedCard("Case study PDF for the sales team", "Doing", "", ["Content"],
                     {"Reach": 400, "Impact": "0.5", "Confidence": 80}),
            SeedCard("Speed up the home page (Core Web Vitals) — LCP under 2.5 s", "To Do",
                     _en("web developer", "the home page's largest contentful paint under 2.5 s",
                         "visitors from search stay", ["LCP < 2.5 s on mobile at p75"]),
                     ["SEO"], {"Reach": 15000, "Impact": "1", "Confidence": 80, "Effort": 3}, 2),
        ],
    )
    fr = SeedBoard(
        "Backlog marketing", "BkLgMktF", ["Idées", "À faire", "En cours", "En revue", "Terminé", "Annulé"],
        [("SEO", "green"), ("Expérience", "purple"), ("Campagne", "red"), ("Contenu", "blue"),
         ("Fonctionnalité", "orange")],
        FR_FIELDS,
        [
            SeedCard("Optimiser les balises title et meta description des pages stratégiques", "À faire",
                     _fr("responsable SEO", "optimiser les balises title et meta description des pages stratégiques",
                         "améliorer le classement dans les résultats de recherche",
                         ["Les 20 pages stratégiques ont une balise title de moins de 60 caractères"]),
                     ["SEO"], {"Portée": 4000, "Impact": "2", "Confiance": 80, "Effort": 3,
                               "Canal de diffusion": "Recherche organique",
                               "Hypothèse à tester": "une balise title plus concise améliore le taux de clics"}, 1),
            SeedCard("Série de vidéos courtes TikTok pour les nouvelles fonctionnalités", "Idées",
                     _fr("spécialiste des médias sociaux", "créer une série de vidéos courtes",
                         "faire découvrir le produit aux jeunes prospects", ["Cinq vidéos de moins de 30 secondes"]),
                     ["Contenu"], {"Portée": 12000, "Impact": "1", "Confiance": 50, "Effort": 5,
                                   "Canal de diffusion": "TikTok", "Segment cible": "18-24 ans"}, 2),
            SeedCard("Test A/B de la page de destination", "En cours",
                     _fr("responsable de la publicité en ligne", "lancer un test A/B sur la page de destination",
                         "augmenter le taux de conversion", ["Deux variantes, trafic 50/50"]),
                     ["Expérience"], {"Portée": 8000, "Impact": "2", "Confiance": 80, "Effort": 2,
                                      "Indicateur clé de performance": "taux-de-conversion"}, 0),
            SeedCard("Formulaire d'inscription à la newsletter", "À faire",
                     _fr("responsable e-mailing", "un formulaire d'inscription sous chaque article",
                         "faire grandir la liste de diffusion", ["Double opt-in"]),
                     ["Fonctionnalité"], {"Portée": 3000, "Impact": "1", "Confiance": 100, "Effort": 1,
                                          "Canal de diffusion": "E-mail"}, 3),
            SeedCard("Promotion saisonnière : soldes d'hiver", "Idées",
                     _fr("chef de campagne", "des soldes d'hiver sur tous les canaux",
                         "dépasser le chiffre d'affaires de décembre dernier", ["Page, trois e-mails, réseaux"]),
                     ["Campagne"], {"Portée": 20000, "Impact": "3", "Confiance": 50, "Effort": 8}, None,
                     "2026-12-01"),
            SeedCard("Contenu de blog : guide des tendances 2027 🎯", "En revue",
                     "En tant que rédactrice, je souhaite publier un guide des tendances afin d'attirer du trafic "
                     "organique.",
                     ["Contenu"], {"Portée": 6000, "Impact": "1", "Confiance": 80, "Effort": 3}, 1),
            SeedCard("Refonte de l'e-mail de bienvenue", "Terminé", "", ["Campagne"],
                     {"Portée": 2000, "Impact": "1", "Confiance": 100, "Effort": 1}),
            SeedCard("Partenariat avec un influenceur", "Annulé", "", ["Campagne"],
                     {"Portée": 30000, "Impact": "2", "Confiance": 20, "Effort": 5}),
            SeedCard("Infographie sur l'étude client", "À faire", "", ["Contenu"],
                     {"Portée": "1 200", "Impact": "0.5", "Confiance": "80 %", "Effort": "2,5"}),
            SeedCard("Pages de destination par ville", "Idées", "", ["SEO"],
                     {"Portée": 5000, "Confiance": 50, "Effort": 0}),
        ],
    )
    return [en, fr]


_WORDS = ("newsletter landing page audience funnel conversion retention campaign launch webinar video blog "
          "search ranking keyword snippet onboarding pricing referral partner social email segment trial").split()


def generated_card(number: int, *, rng_seed: int = 11) -> SeedCard:
    """A synthetic card for benchmarks (about 2.6 KB as served, with its custom field items), deterministic in its
    number."""
    rng = random.Random(rng_seed * 1_000_003 + number)
    words = [rng.choice(_WORDS) for _ in range(6)]
    desc = _en(rng.choice(["SEO lead", "email marketer", "content marketer"]), " ".join(words[:4]),
               " ".join(words[2:]), ["Reviewed by the team"]) + "\n\n" + " ".join(
        rng.choice(_WORDS) for _ in range(60)).capitalize() + "."
    return SeedCard(
        f"Card {number}: {' '.join(words).capitalize()}", rng.choice(["Ideas", "To Do", "Doing"]), desc,
        [rng.choice(["SEO", "A/B test", "Campaign", "Content", "Feature"])],
        {"Reach": rng.randrange(100, 50000), "Impact": rng.choice(["0.25", "0.5", "1", "2", "3"]),
         "Confidence": rng.choice([50, 80, 100]), "Effort": rng.choice([0.5, 1, 2, 3, 5, 8]),
         "Business value": rng.randrange(1, 11)},
        rng.randrange(0, len(MEMBERS)))
