"""The emulated Jira's data: its field list, the seeded marketing backlog and a generator of realistic issues.

The seed is the marketing backlog of the seed articles: feature marketing, A/B experiments, technical/SEO
work, campaigns and content, with user stories in English and in French, and a few issues whose scoring
inputs are missing or unreadable (a user typed "high" in a number field, left Effort empty, ...).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# (id, name, schema type, custom type) — the custom fields a marketing Jira site has. Ids are what a real
# site would assign; the connector never relies on them (it resolves fields by name through /field).
CUSTOM_FIELDS: list[tuple[str, str, str, str]] = [
    ("customfield_10019", "Rank", "any", "com.pyxis.greenhopper.jira:gh-lexo-rank"),
    ("customfield_10020", "Sprint", "array", "com.pyxis.greenhopper.jira:gh-sprint"),
    ("customfield_10050", "Reach", "number", "com.atlassian.jira.plugin.system.customfieldtypes:float"),
    ("customfield_10051", "Impact", "number", "com.atlassian.jira.plugin.system.customfieldtypes:float"),
    ("customfield_10052", "Confidence", "number", "com.atlassian.jira.plugin.system.customfieldtypes:float"),
    ("customfield_10053", "Effort", "number", "com.atlassian.jira.plugin.system.customfieldtypes:float"),
    ("customfield_10054", "Business value", "number", "com.atlassian.jira.plugin.system.customfieldtypes:float"),
    ("customfield_10055", "Time criticality", "number", "com.atlassian.jira.plugin.system.customfieldtypes:float"),
    ("customfield_10056", "Risk reduction", "number", "com.atlassian.jira.plugin.system.customfieldtypes:float"),
    ("customfield_10057", "Ease", "number", "com.atlassian.jira.plugin.system.customfieldtypes:float"),
    ("customfield_10060", "Channel", "option", "com.atlassian.jira.plugin.system.customfieldtypes:select"),
    ("customfield_10061", "Target segment", "string", "com.atlassian.jira.plugin.system.customfieldtypes:textfield"),
    ("customfield_10062", "KPI", "string", "com.atlassian.jira.plugin.system.customfieldtypes:textfield"),
    ("customfield_10070", "Marketing score", "number", "com.atlassian.jira.plugin.system.customfieldtypes:float"),
    ("customfield_10071", "Marketing rank", "number", "com.atlassian.jira.plugin.system.customfieldtypes:float"),
    ("customfield_10072", "KPI result", "string", "com.atlassian.jira.plugin.system.customfieldtypes:textarea"),
]
FIELD_ID = {name: field_id for field_id, name, _, _ in CUSTOM_FIELDS}

SYSTEM_FIELDS: list[tuple[str, str, dict[str, Any]]] = [
    ("summary", "Summary", {"type": "string", "system": "summary"}),
    ("description", "Description", {"type": "string", "system": "description"}),
    ("issuetype", "Issue Type", {"type": "issuetype", "system": "issuetype"}),
    ("status", "Status", {"type": "status", "system": "status"}),
    ("labels", "Labels", {"type": "array", "items": "string", "system": "labels"}),
    ("assignee", "Assignee", {"type": "user", "system": "assignee"}),
    ("reporter", "Reporter", {"type": "user", "system": "reporter"}),
    ("priority", "Priority", {"type": "priority", "system": "priority"}),
    ("project", "Project", {"type": "project", "system": "project"}),
    ("duedate", "Due date", {"type": "date", "system": "duedate"}),
    ("created", "Created", {"type": "datetime", "system": "created"}),
    ("updated", "Updated", {"type": "datetime", "system": "updated"}),
    ("comment", "Comment", {"type": "comments-page", "system": "comment"}),
]

ISSUE_TYPES = {
    "Feature": "10001",
    "Experiment": "10002",
    "Technical": "10003",
    "Campaign": "10004",
    "Content": "10005",
    "Task": "10006",
}
STATUSES = {  # name -> (id, statusCategory key, category id, category name)
    "Backlog": ("10000", "new", 2, "To Do"),
    "À faire": ("10001", "new", 2, "To Do"),
    "To Do": ("10002", "new", 2, "To Do"),
    "In Progress": ("3", "indeterminate", 4, "In Progress"),
    "En cours": ("10003", "indeterminate", 4, "In Progress"),
    "Done": ("10004", "done", 3, "Done"),
    "Won't Do": ("10005", "done", 3, "Done"),
}
CHANNELS = ["Email", "Organic search", "Paid search", "Social", "TikTok", "Website", "Newsletter"]
PEOPLE = [
    ("5b10a2844c20165700ede21g", "Mia Krystof"),
    ("5b10ac8d82e05b22cc7d4ef5", "Camille Durand"),
    ("5b109f2e9729b51b54dc274d", "Léa Martin"),
    ("5c3a7d1e8b2f4a0012f3c9aa", "Sam Okafor"),
]


@dataclass
class SeedIssue:
    key_number: int
    project: str
    issue_type: str
    status: str
    summary: str
    description: str
    labels: list[str] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)  # custom field name -> value as Jira holds it
    assignee: int | None = None
    duedate: str | None = None


def _en(role: str, want: str, so_that: str, channel: str, segment: str, kpi: str, hypothesis: str,
        criteria: list[str]) -> str:
    lines = [f"As a: {role}", f"I want: {want}", f"So that: {so_that}", f"Channel: {channel}",
             f"Target segment: {segment}", f"KPI: {kpi}", f"Hypothesis: {hypothesis}", "", "Acceptance criteria:"]
    return "\n".join(lines + [f"- {c}" for c in criteria])


def _fr(role: str, want: str, so_that: str, channel: str, segment: str, kpi: str, hypothesis: str,
        criteria: list[str]) -> str:
    lines = [f"En tant que : {role}", f"Je veux : {want}", f"Afin de : {so_that}", f"Canal de diffusion : {channel}",
             f"Segment cible : {segment}", f"Indicateur clé de performance (KPI) : {kpi}",
             f"Hypothèse à tester : {hypothesis}", "", "Critères d'acceptation :"]
    return "\n".join(lines + [f"- {c}" for c in criteria])


def _rice(reach: Any, impact: Any, confidence: Any, effort: Any, **more: Any) -> dict[str, Any]:
    values = {"Reach": reach, "Impact": impact, "Confidence": confidence, "Effort": effort}
    names = {"value": "Business value", "time_criticality": "Time criticality", "risk_reduction": "Risk reduction",
             "ease": "Ease", "channel": "Channel", "segment": "Target segment", "kpi": "KPI"}
    values.update({names[k]: v for k, v in more.items()})
    return values


def seed_issues() -> list[SeedIssue]:
    """The seeded backlog: 42 issues in project MKT and 3 in OPS (out of the usual scope)."""
    issues: list[SeedIssue] = []
    n = 0

    def add(issue_type: str, status: str, summary: str, description: str, labels: list[str],
            inputs: dict[str, Any], *, project: str = "MKT", assignee: int | None = None,
            duedate: str | None = None) -> None:
        nonlocal n
        n += 1
        issues.append(SeedIssue(n, project, issue_type, status, summary, description, labels, inputs,
                                assignee, duedate))

    # The seed article's own examples (French), then English and French items of each of the five types.
    add("Technical", "À faire", "Optimiser les balises title et meta description des pages stratégiques",
        _fr("responsable SEO", "optimiser les balises title et meta description des pages stratégiques du site",
            "améliorer le classement dans les résultats de recherche", "Recherche organique",
            "nouveaux utilisateurs", "organic-traffic",
            "une balise title plus concise et descriptive améliore le taux de clics",
            ["Les 20 pages stratégiques ont une balise title de moins de 60 caractères",
             "La meta description de chaque page contient le mot-clé principal"]),
        ["seo"], _rice(4000, 2, 80, 3, value=7, time_criticality=4, risk_reduction=3, ease=7,
                       channel="Organic search", kpi="organic-traffic"), assignee=2)
    add("Content", "Backlog", "Série de vidéos courtes TikTok pour les nouvelles fonctionnalités",
        _fr("spécialiste des médias sociaux", "créer une série de vidéos courtes pour promouvoir les nouvelles "
            "fonctionnalités du produit sur TikTok", "faire connaître les nouveautés auprès des 18-30 ans",
            "TikTok", "18-30 ans", "video-views", "des vidéos de moins de 30 secondes sont vues jusqu'au bout",
            ["Cinq vidéos publiées en deux semaines", "Chaque vidéo renvoie vers la page des nouveautés"]),
        ["video", "social"], _rice(12000, 1, 50, 5, value=5, time_criticality=3, risk_reduction=1, ease=4,
                                   channel="TikTok"), assignee=3)
    add("Experiment", "En cours", "Test A/B sur la page de destination de la campagne Google Ads",
        _fr("responsable de la publicité en ligne", "lancer un test A/B sur la page de destination de la "
            "campagne Google Ads", "améliorer le taux de conversion", "Recherche payante", "visiteurs payants",
            "email-leads", "un formulaire plus court augmente les conversions de 15 %",
            ["Deux variantes servies à 50/50", "Le test tourne jusqu'à 95 % de confiance"]),
        ["ab-test"], _rice(6000, 2, 70, 2, value=8, time_criticality=6, risk_reduction=2, ease=8,
                           channel="Paid search", kpi="email-leads"), assignee=2)
    add("Feature", "À faire", "Inscription à la newsletter depuis le pied de page",
        "En tant qu'utilisateur, je souhaite pouvoir m'inscrire à la newsletter afin de recevoir des informations "
        "sur les promotions et les nouveaux produits.\n\nCritères d'acceptation :\n- Double opt-in conforme RGPD\n"
        "- Confirmation envoyée en moins d'une minute",
        ["newsletter"], _rice(8000, 1, 80, 2, value=6, time_criticality=3, risk_reduction=2, ease=7,
                              channel="Email", kpi="email-leads"), assignee=1)
    add("Technical", "Backlog", "Balise title de la page d'accueil",
        "En tant que spécialiste SEO, je veux optimiser la balise title de la page d'accueil, afin d'améliorer "
        "son classement sur Google, pour le segment des nouveaux utilisateurs, en mesurant l'augmentation du "
        "trafic organique, en testant l'hypothèse qu'une balise title plus concise et descriptive améliore le "
        "taux de clics.",
        ["seo"], _rice(15000, 1, 80, 1, value=6, time_criticality=2, risk_reduction=1, ease=9))

    english = [
        ("Feature", "Product launch landing page for the spring collection", "marketing manager",
         "a launch landing page with the new collection and a waitlist form",
         "we collect qualified leads before launch day", "Website", "returning customers", "email-leads",
         "a waitlist converts better than a plain newsletter box", ["launch"], (5000, 2, 80, 3)),
        ("Feature", "Referral programme: give 10 EUR, get 10 EUR", "growth marketer",
         "a referral link in every order confirmation email", "happy customers bring their friends", "Email",
         "customers with 2+ orders", "referrals", "a double-sided reward doubles referral rate",
         ["launch"], (3000, 3, 50, 8)),
        ("Feature", "Exit-intent discount pop-up", "e-commerce manager", "an exit-intent pop-up with a 10% code",
         "abandoning visitors come back", "Website", "first-time visitors", "conversion-rate",
         "a one-time discount recovers 5% of abandons", [], (20000, 0.5, 50, 1)),
        ("Experiment", "A/B test: subject lines with emoji vs without", "email marketer",
         "to test emoji in newsletter subject lines", "we raise open rates", "Email", "newsletter subscribers",
         "open-rate", "emoji lift open rate by 2 points", ["ab-test"], (40000, 0.5, 80, 1)),
        ("Experiment", "A/B test: pricing page with annual plan first", "product marketer",
         "to show the annual plan first on the pricing page", "more visitors choose annual billing", "Website",
         "trial users", "annual-share", "anchoring on annual raises its share", ["ab-test"], (7000, 2, 50, 2)),
        ("Experiment", "Test CTA colour on the demo request form", "conversion specialist",
         "to test a high-contrast CTA", "more demo requests", "Website", "B2B visitors", "demo-requests",
         "contrast lifts clicks", ["experiment"], (9000, 0.25, 50, 0.5)),
        ("Technical", "Fix Core Web Vitals on blog templates", "SEO lead", "LCP under 2.5s on blog pages",
         "our articles rank and keep readers", "Organic search", "all blog readers", "organic-traffic",
         "faster pages rank higher", ["seo", "performance"], (25000, 1, 80, 5)),
        ("Technical", "GA4 event tracking for newsletter signups", "marketing analyst",
         "a generate_lead event on every signup form", "we can measure email lead generation", "Website",
         "all visitors", "email-leads", "tracking every form shows where leads come from",
         ["tracking"], (50000, 2, 100, 2)),
        ("Technical", "XML sitemap and hreflang for the French site", "SEO lead",
         "hreflang tags between the English and French pages", "Google shows the right language", "Organic search",
         "French-speaking visitors", "organic-traffic", "hreflang fixes wrong-language results",
         ["seo"], (10000, 1, 80, 2)),
        ("Campaign", "Black Friday seasonal promotion", "campaign manager",
         "a seasonal promotion across email, paid social and the website", "we hit the Q4 revenue target",
         "Email", "all subscribers", "revenue", "an early-access offer beats a plain discount",
         ["campaign", "promo"], (60000, 3, 80, 8)),
        ("Campaign", "Spring webinar series for B2B leads", "B2B marketer", "three webinars with partners",
         "we generate qualified leads", "Email", "B2B prospects", "email-leads",
         "partner webinars bring more leads than solo ones", ["campaign"], (4000, 2, 50, 5)),
        ("Campaign", "Retargeting campaign for cart abandoners", "paid media manager",
         "a retargeting campaign on social for cart abandoners", "they complete their purchase", "Social",
         "cart abandoners", "conversion-rate", "dynamic product ads recover 8% of carts", ["campaign"],
         (12000, 1, 80, 3)),
        ("Content", "Blog series: 10 email marketing tips", "content marketer",
         "a series of ten blog articles on email marketing", "we attract organic traffic and subscribers",
         "Organic search", "marketing managers", "organic-traffic", "how-to articles bring subscribers",
         ["blog", "content"], (18000, 1, 80, 8)),
        ("Content", "Customer case study video", "content marketer", "a three-minute customer case study video",
         "prospects trust us sooner", "Website", "B2B prospects", "demo-requests",
         "a real customer story shortens the sales cycle", ["video"], (5000, 2, 50, 5)),
        ("Content", "Lead magnet: marketing KPI template", "content marketer",
         "a downloadable KPI spreadsheet behind an email form", "we grow email leads", "Email",
         "marketing managers", "email-leads", "a practical template converts 20% of readers", ["content"],
         (9000, 2, 80, 3)),
        ("Feature", "Store locator with opening hours", "local marketing manager",
         "a store locator page with opening hours", "visitors find the nearest shop", "Website",
         "local shoppers", "store-visits", "local pages drive store visits", ["feature"], (8000, 1, 80, 3)),
        ("Experiment", "Free shipping threshold test", "e-commerce manager", "to test a 49 EUR free shipping "
         "threshold against 59 EUR", "the average order value rises", "Website", "all shoppers", "order-value",
         "a lower threshold raises order value", ["experiment"], (30000, 1, 50, 1)),
        ("Technical", "Consent banner that respects GA4 consent mode", "marketing analyst",
         "consent mode v2 wired to the banner", "we keep measuring within the law", "Website", "EU visitors",
         "tracked-sessions", "consent mode recovers modelled conversions", ["tracking"], (60000, 2, 80, 3)),
        ("Campaign", "Mother's Day gift guide campaign", "campaign manager", "a gift guide sent by email and "
         "pushed on social", "we sell more gift sets", "Email", "gift buyers", "revenue",
         "curated guides convert better than catalogue pages", ["campaign"], (35000, 2, 80, 5)),
        ("Content", "Comparison pages against competitors", "content marketer", "honest comparison pages",
         "prospects choose us with confidence", "Organic search", "evaluating prospects", "demo-requests",
         "comparison pages attract high-intent searches", ["content", "seo"], (6000, 2, 80, 3)),
        ("Content", "Monthly newsletter redesign", "email marketer", "a new newsletter layout with one main story",
         "more subscribers click through", "Newsletter", "newsletter subscribers", "click-rate",
         "one main story beats a digest", ["content"], (40000, 0.5, 80, 2)),
    ]
    statuses = ["Backlog", "To Do", "In Progress", "Backlog", "To Do", "Done"]
    for index, (kind, summary, role, want, so_that, channel, segment, kpi, hypothesis, labels, rice) in enumerate(
            english):
        criteria = [f"{summary} is reviewed by the team", "Results are reported in the weekly marketing review"]
        add(kind, statuses[index % len(statuses)], summary,
            _en(role, want, so_that, channel, segment, kpi, hypothesis, criteria), labels,
            _rice(*rice, value=(index % 9) + 1, time_criticality=(index * 3 % 10) + 1,
                  risk_reduction=(index % 4) + 1, ease=10 - (index % 7), channel=channel, kpi=kpi),
            assignee=index % 4, duedate=f"2026-{(index % 12) + 1:02d}-15")

    french = [
        ("Feature", "Programme de fidélité : points sur chaque commande", "responsable CRM",
         "un programme de points visible dans l'espace client", "augmenter la fréquence d'achat", "Email",
         "clients fidèles", "repeat-purchases", "des points visibles augmentent le réachat", ["fonctionnalite"],
         (6000, 2, 50, 8)),
        ("Experiment", "Test A/B de l'objet des e-mails de relance", "responsable e-mailing",
         "tester deux objets pour l'e-mail de relance de panier", "récupérer plus de paniers", "Email",
         "paniers abandonnés", "conversion-rate", "un objet personnalisé augmente l'ouverture", ["ab-test"],
         (8000, 1, 80, 1)),
        ("Technical", "Données structurées produit (schema.org)", "responsable SEO",
         "ajouter les données structurées Product sur les fiches", "obtenir des extraits enrichis",
         "Recherche organique", "acheteurs en recherche", "organic-traffic",
         "les étoiles d'avis augmentent le taux de clics", ["seo", "technique"], (20000, 1, 80, 3)),
        ("Campaign", "Campagne de la rentrée", "chef de projet campagne",
         "une campagne multicanale pour la rentrée", "atteindre l'objectif de chiffre d'affaires de septembre",
         "Social", "parents", "revenue", "une offre groupée performe mieux qu'une remise", ["campagne"],
         (30000, 2, 80, 5)),
        ("Content", "Livre blanc : le marketing agile", "responsable contenu",
         "publier un livre blanc sur le marketing agile", "générer des leads qualifiés", "Email",
         "directeurs marketing", "email-leads", "un livre blanc convertit mieux qu'un article", ["contenu"],
         (4000, 2, 80, 8)),
        ("Content", "Calendrier éditorial des réseaux sociaux", "community manager",
         "un calendrier éditorial sur trois mois", "publier régulièrement", "Social", "abonnés",
         "engagement", "la régularité augmente l'engagement", ["contenu", "social"], (10000, 0.5, 50, 2)),
        ("Campaign", "Soldes d'hiver : e-mail et bannières", "chef de projet campagne",
         "une séquence de trois e-mails et des bannières pour les soldes", "écouler le stock d'hiver", "Email",
         "tous les abonnés", "revenue", "une séquence de trois e-mails vend plus qu'un seul", ["campagne", "promo"],
         (45000, 2, 80, 3)),
        ("Experiment", "Test de la preuve sociale sur la page panier", "responsable conversion",
         "afficher les avis clients sur la page panier", "rassurer avant le paiement", "Site web",
         "acheteurs hésitants", "conversion-rate", "les avis réduisent l'abandon de panier", ["experience"],
         (15000, 1, 50, 1)),
    ]
    fr_statuses = ["À faire", "En cours", "Backlog", "Done"]
    for index, (kind, summary, role, want, so_that, channel, segment, kpi, hypothesis, labels, rice) in enumerate(
            french):
        criteria = ["Validé par l'équipe marketing", "Résultats présentés en revue de sprint"]
        add(kind, fr_statuses[index % len(fr_statuses)], summary,
            _fr(role, want, so_that, channel, segment, kpi, hypothesis, criteria), labels,
            _rice(*rice, value=(index % 8) + 2, time_criticality=(index * 2 % 9) + 1,
                  risk_reduction=(index % 3) + 1, ease=9 - (index % 5), kpi=kpi),
            assignee=(index + 1) % 4)

    # Odd and incomplete inputs, as real backlogs have them.
    B = "Backlog"
    add("Feature", B, "Chatbot on the pricing page", "As a sales lead, I want a chatbot on the pricing page so that "
        "visitors get answers at once.", [], _rice("high", 2, 80, 5))
    add("Content", B, "Podcast pilot episode", "We could try a podcast. No story written yet.", ["content"],
        _rice(2000, 1, 50, None))
    add("Experiment", B, "Homepage hero video test", "As a brand manager, I want to test a hero video so that the "
        "homepage feels alive.", ["ab-test"], _rice(30000, 7, 80, 2))
    add("Campaign", B, "Partner co-marketing with a SaaS partner", "", ["campaign"], _rice(None, None, None, None))
    add("Technical", B, "Migrate tag manager container", "Technical debt: move every tag to server-side tagging.",
        ["tracking"], _rice(50000, 1, 150, 0))
    add("Task", B, "Refresh brand guidelines PDF", "Update the logo usage page.", ["brand"], _rice(500, 0.5, 80, 1))
    add("Content", B, "Glossaire marketing pour le blog", "Rédiger un glossaire de 50 termes.", ["blog"],
        _rice(3000, 1, "80 %", "3,5"))
    add("Feature", B, "Dark mode for the email templates", "As a designer, I want dark-mode friendly templates.",
        [], _rice(20000, 0.25, 50, 3))

    # Out of the usual scope (another project): a JQL "project = MKT" must not see these.
    add("Task", "Backlog", "Renew SSL certificates", "Operations work.", [], {}, project="OPS")
    add("Task", "Backlog", "Rotate API keys", "Operations work.", [], {}, project="OPS")
    add("Task", "Backlog", "Quarterly access review", "Operations work.", [], {}, project="OPS")
    return issues


_WORDS = ("campaign audience conversion funnel landing page newsletter subscribers organic traffic paid social "
          "retargeting engagement content calendar brand awareness email deliverability segment persona "
          "attribution experiment hypothesis variant control significance baseline uplift cohort retention "
          "onboarding webinar whitepaper case study keyword backlink snippet crawl index canonical").split()


def generated_issue(number: int, *, project: str = "MKT", rng_seed: int = 7) -> SeedIssue:
    """A synthetic but realistic issue (about 6 KB with fields=*all), deterministic in its number."""
    rng = random.Random(rng_seed * 1_000_003 + number)
    kind = rng.choice(["Feature", "Experiment", "Technical", "Campaign", "Content"])
    words = [rng.choice(_WORDS) for _ in range(6)]
    summary = f"{kind} {number}: {' '.join(words).capitalize()}"
    paragraphs = [" ".join(rng.choice(_WORDS) for _ in range(60)).capitalize() + "." for _ in range(3)]
    story = _en(f"{rng.choice(['SEO lead', 'email marketer', 'content marketer', 'growth marketer'])}",
                " ".join(words[:4]), " ".join(words[2:]), rng.choice(CHANNELS), "returning visitors",
                rng.choice(["email-leads", "organic-traffic", "conversion-rate"]), " ".join(words[1:5]),
                ["Reviewed by the team", "Reported in the weekly review"])
    inputs = _rice(rng.randrange(100, 50000), rng.choice([0.25, 0.5, 1, 2, 3]), rng.choice([50, 80, 100]),
                   rng.choice([0.5, 1, 2, 3, 5, 8]), value=rng.randrange(1, 11), time_criticality=rng.randrange(1, 11),
                   risk_reduction=rng.randrange(1, 11), ease=rng.randrange(1, 11))
    return SeedIssue(number, project, kind, rng.choice(["Backlog", "To Do", "In Progress"]), summary,
                     story + "\n\n" + "\n\n".join(paragraphs), [kind.lower()], inputs, rng.randrange(0, 4),
                     None)


def base_time() -> datetime:
    """When the seeded issues were created: a fixed point 30 days before today, so runs are comparable."""
    today = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)
    return today - timedelta(days=30)
