"""Reads and writes the marketing user-story template (As a / I want / So that / ...) in English and French.

The template comes from the seed article: "En tant que / Je veux / Afin de / Canal de diffusion / Segment
cible / Indicateur clé de performance (KPI) / Hypothèse à tester", plus acceptance criteria. People write it
as labelled lines (with or without ":", bulleted, in bold, any case, with or without accents) or as one
sentence ("As a SEO lead, I want to ... so that ...", "En tant que responsable SEO, je souhaite ... afin
d'..."). `parse_story` never raises: text it does not recognise simply leaves fields empty.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from mappings.model import UserStory

_APOSTROPHES = "\u2019\u02bc\u2018`\u00b4"
_SPACES = "\u00a0\u202f\u2009\u2007\u2002\u2003\u2005\u2006\u2008\t\f\v"
_QUOTES = "\"'\u201c\u201d\u00ab\u00bb\u201e\u2039\u203a "


@functools.lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    # One character in, one character out, so a match in the folded line slices the original line.
    if char in _APOSTROPHES:
        return "'"
    if char in _SPACES:
        return " "
    base = "".join(c for c in unicodedata.normalize("NFD", char) if not unicodedata.combining(c)).lower()
    return base if len(base) == 1 else char


# ASCII needs no decomposition: lower case, the backquote as an apostrophe, odd spaces as spaces.
_ASCII_FOLD = str.maketrans({"`": "'", "\t": " ", "\f": " ", "\v": " "})


def _fold_line(line: str) -> str:
    if line.isascii():
        return line.lower().translate(_ASCII_FOLD)  # the common case, and one character per character too
    return "".join(map(_fold_char, line))


@dataclass(frozen=True)
class _Label:
    text: str  # folded: lower case, no accents, straight apostrophe
    field: str  # a UserStory field, or "acceptance_criteria"
    language: str | None
    # Single generic words ("KPI dashboard is slow") would turn prose into fields; they need ":" or bold.
    needs_colon: bool = False


_LABELS = (
    _Label("en tant que", "role", "fr"),
    _Label("en tant qu'", "role", "fr"),
    _Label("as an", "role", "en"),
    _Label("as a", "role", "en"),
    _Label("je veux", "want", "fr"),
    _Label("je souhaite", "want", "fr"),
    _Label("j'aimerais", "want", "fr"),
    _Label("je voudrais", "want", "fr"),
    _Label("i want to", "want", "en"),
    _Label("i want", "want", "en"),
    _Label("i would like to", "want", "en"),
    _Label("so that", "so_that", "en"),
    _Label("in order to", "so_that", "en"),
    _Label("afin de", "so_that", "fr"),
    _Label("afin d'", "so_that", "fr"),
    _Label("afin que", "so_that", "fr"),
    _Label("canal de diffusion", "channel", "fr"),
    _Label("canal", "channel", "fr", needs_colon=True),
    _Label("channel", "channel", "en", needs_colon=True),
    _Label("distribution channel", "channel", "en"),
    _Label("target segment", "segment", "en"),
    _Label("segment cible", "segment", "fr"),
    _Label("segment", "segment", None, needs_colon=True),
    _Label("indicateur cle de performance (kpi)", "kpi", "fr"),
    _Label("indicateur cle de performance", "kpi", "fr"),
    _Label("key performance indicator (kpi)", "kpi", "en"),
    _Label("key performance indicator", "kpi", "en"),
    _Label("kpi", "kpi", None, needs_colon=True),
    _Label("hypothese a tester", "hypothesis", "fr"),
    _Label("hypothese", "hypothesis", "fr", needs_colon=True),
    _Label("hypothesis to test", "hypothesis", "en"),
    _Label("hypothesis", "hypothesis", "en", needs_colon=True),
    _Label("acceptance criteria", "acceptance_criteria", "en"),
    _Label("criteres d'acceptation", "acceptance_criteria", "fr"),
    _Label("criteres d'acceptance", "acceptance_criteria", "fr"),
)
_BY_TEXT = {label.text: label for label in _LABELS}
_ALTERNATION = "|".join(re.escape(label.text) for label in sorted(_LABELS, key=lambda lb: -len(lb.text)))
_BULLET = r"(?:[-*\u2022+\u25aa\u25e6>]|\d{1,3}[.)])\s+"
_MARKUP = r"(?:\*\*|__|\*|_)"
# One match reads a label line: the atomic group takes the first (longest) label as a plain search would and
# never gives it back for a shorter one; then the label must end a word (an apostrophe ends one itself: "afin d'").
# After it, ":" or a spaced dash ("Target segment – returning visitors") separates the label from its value.
_LABEL_LINE = re.compile(
    rf"^(?>\s*(?:{_BULLET})?(?P<open>{_MARKUP})?\s*(?P<label>{_ALTERNATION}))(?:(?<=')|(?![^\W_]|'))"
    rf"(?:\s*(?:{_MARKUP})?\s*(?P<colon>:|[-\u2013\u2014](?=\s))?)\s*(?:{_MARKUP})?\s*"
)
_BULLET_LINE = re.compile(rf"^\s*{_BULLET}")

_WANT_MARKERS = re.compile(
    r"(?:^|[\s,;])(i want to|i want|i would like to|i'd like to|i need to|i need|"
    r"je veux|je souhaite|j'aimerais|je voudrais|j'ai besoin de)(?=[\s,:]|$)"
)
_SO_THAT_MARKERS = re.compile(r"(?:^|[\s,;])(so that|in order to|afin de|afin d'|afin que|afin qu')")
_ROLE_START = re.compile(r"(?:^|[\s\"'(\u00ab\u201c:])(en tant que|en tant qu'|as an|as a)(?=\s|$|(?<='))")
# The seed's long sentence carries segment, KPI and hypothesis after the goal, each behind a comma.
_TAIL_MARKERS = (
    (re.compile(r",\s*pour le segment (?:des |de |du |d')?"), "segment"),
    (re.compile(r",\s*for the (?:segment )?(?=.*\bsegment\b)"), "segment"),
    (re.compile(r",\s*en mesurant (?:l'|le |la |les )?"), "kpi"),
    (re.compile(r",\s*measured by "), "kpi"),
    (re.compile(r",\s*en testant l'hypothese (?:qu'|que )?"), "hypothesis"),
    (re.compile(r",\s*testing the hypothesis (?:that )?"), "hypothesis"),
)
STORY_FIELDS = ("role", "want", "so_that", "channel", "segment", "kpi", "hypothesis")


@dataclass(slots=True)
class _LabelHit:
    label: _Label
    value: str  # the rest of the line, from the original text
    colon: bool
    markup: bool


def _match_label(line: str, folded: str) -> _LabelHit | None:
    """The label a line opens with; `folded` is the line folded (_fold_line)."""
    match = _LABEL_LINE.match(folded)
    if match is None:
        return None  # no label, or one that is only the start of a longer word ("as apart", "kpis")
    open_markup, label_text, colon = match.group("open", "label", "colon")
    label = _BY_TEXT[label_text]
    if open_markup is not None:
        end = match.end()
    elif colon is not None:
        # Without opening markup, stars after the colon belong to the value ("As a: *x*").
        end = match.end("colon")
    elif label.needs_colon:
        return None
    else:
        end = match.end("label")
    return _LabelHit(label, line[end:].strip(), colon is not None, open_markup is not None)


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    cleaned = value.strip().strip(_QUOTES).strip()
    cleaned = cleaned.rstrip(".,;").strip().strip(_QUOTES).strip()
    return cleaned or None


def _split_sentence(text: str) -> dict[str, str | None]:
    """Splits "SEO lead, I want to X so that Y" (the text after "As a") into role, want and so_that."""
    folded = _fold_line(text)
    fields: dict[str, str | None] = {}
    want = _WANT_MARKERS.search(folded)
    if want is None:
        fields["role"] = _clean(text)
        return fields
    fields["role"] = _clean(text[: want.start(1)])
    rest_start = want.end(1)
    goal = _SO_THAT_MARKERS.search(folded, rest_start)
    if goal is None:
        fields["want"] = _clean(text[rest_start:])
        return fields
    fields["want"] = _clean(text[rest_start : goal.start(1)])
    goal_start = goal.end(1)
    cuts = []
    for pattern, field in _TAIL_MARKERS:
        found = pattern.search(folded, goal_start)
        if found is not None:
            cuts.append((found.start(), found.end(), field))
    cuts.sort()
    ends = [start for start, _, _ in cuts] + [len(text)]
    fields["so_that"] = _clean(text[goal_start : ends[0]])
    for index, (_, value_start, field) in enumerate(cuts):
        if field not in fields:
            fields[field] = _clean(text[value_start : ends[index + 1]])
    return fields


def _looks_like_role(text: str) -> bool:
    return "," not in text and len(text.split()) <= 8


def _find_sentence(line: str, folded: str) -> tuple[dict[str, str | None], str] | None:
    """Finds a one-sentence story inside a line of prose ('User Story: "En tant que ..."'); `folded` is the line
    folded (_fold_line)."""
    for start in _ROLE_START.finditer(folded):
        if _WANT_MARKERS.search(folded, start.end(1)) is None:
            continue
        language = _BY_TEXT[start.group(1)].language or "en"
        return _split_sentence(line[start.end(1) :]), language
    return None


def parse_story(text: str | None) -> UserStory:
    """Parses a user story from a description; unknown text leaves fields empty. Never raises."""
    if not isinstance(text, str) or not text.strip():
        return UserStory()
    found: dict[str, str] = {}
    criteria: list[str] = []
    languages: list[str] = []

    def keep(field: str, value: str | None) -> None:
        if value and field not in found:
            found[field] = value

    pending: str | None = None  # a field whose label had no value on its line; the next lines hold it
    pending_lines: list[str] = []
    in_criteria = False
    blank_in_criteria = False
    criteria_bulleted = False  # once criteria come as bullets, a plain line ends them

    def flush_pending() -> None:
        nonlocal pending
        if pending is not None and pending_lines:
            keep(pending, " ".join(pending_lines))
        pending = None
        pending_lines.clear()

    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # Folding keeps one character for one, so the folded text's lines are the text's lines, folded.
    folded_text = _fold_line(text)
    for line, folded in zip(text.split("\n"), folded_text.split("\n"), strict=True):
        hit = _match_label(line, folded)
        blank = not line.strip()
        if in_criteria:
            if hit is not None and (hit.colon or hit.markup):
                in_criteria = False
            elif blank:
                blank_in_criteria = True
                continue
            elif _BULLET_LINE.match(line) or not (blank_in_criteria or criteria_bulleted):
                criteria_bulleted = criteria_bulleted or _BULLET_LINE.match(line) is not None
                item = _BULLET_LINE.sub("", line, count=1).strip()
                if item:
                    criteria.append(item)
                continue
            else:
                in_criteria = False
        elif pending is not None:
            if hit is not None:
                flush_pending()
            elif blank:
                if pending_lines:
                    flush_pending()
                continue
            else:
                pending_lines.append(line.strip())
                continue
        if hit is None:
            if "role" not in found:
                sentence = _find_sentence(line, folded)
                if sentence is not None:
                    fields, language = sentence
                    languages.append(language)
                    for field, value in fields.items():
                        keep(field, value)
            continue
        label = hit.label
        if label.field == "role" and not (hit.colon or hit.markup) and hit.value:
            fields = _split_sentence(hit.value)
            if "want" not in fields and not _looks_like_role(hit.value):
                continue  # "As a result, the campaign ..." is prose, not a role
            languages.append(label.language or "en")
            for field, value in fields.items():
                keep(field, value)
            continue
        if label.language:
            languages.append(label.language)
        if label.field == "acceptance_criteria":
            in_criteria = True
            blank_in_criteria = criteria_bulleted = False
            if hit.value:
                criteria.append(hit.value)
            continue
        if not hit.value:
            pending = label.field
            continue
        if hit.colon or hit.markup:
            keep(label.field, hit.value)
        else:
            keep(label.field, _clean(hit.value))
    flush_pending()
    return UserStory(
        **{field: found.get(field) for field in STORY_FIELDS},
        acceptance_criteria=criteria,
        language=languages[0] if languages else None,
    )


_RENDER_LABELS = {
    "en": {
        "role": "As a",
        "want": "I want",
        "so_that": "So that",
        "channel": "Channel",
        "segment": "Target segment",
        "kpi": "KPI",
        "hypothesis": "Hypothesis",
        "acceptance_criteria": "Acceptance criteria",
    },
    "fr": {
        "role": "En tant que",
        "want": "Je veux",
        "so_that": "Afin de",
        "channel": "Canal de diffusion",
        "segment": "Segment cible",
        "kpi": "Indicateur clé de performance (KPI)",
        "hypothesis": "Hypothèse à tester",
        "acceptance_criteria": "Critères d'acceptation",
    },
}


def render_story(story: UserStory, language: str = "en") -> str:
    """Writes a story as the template's labelled lines, in English or French (empty fields are left out)."""
    labels = _RENDER_LABELS["fr" if language == "fr" else "en"]
    # French typography puts a no-break space before ":"; the parser folds it back to a space.
    separator = "\u00a0: " if language == "fr" else ": "
    lines: list[str] = []
    for field in STORY_FIELDS:
        value = getattr(story, field)
        if value and value.strip():
            lines.append(f"{labels[field]}{separator}{' '.join(value.split())}")
    criteria = [" ".join(item.split()) for item in story.acceptance_criteria if item and item.strip()]
    if criteria:
        lines.append(f"{labels['acceptance_criteria']}{separator.rstrip()}")
        lines.extend(f"- {item}" for item in criteria)
    return "\n".join(lines)
