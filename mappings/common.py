"""What every tool's mapping reads the same way: scoring inputs and the values of our own fields, each through
the tool's `value(logical)` lookup, so a rule about a number holds for Jira, Trello and Asana alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mappings.model import OWNED_FIELDS, BacklogItem, ScoringInputs
from mappings.numbers import read_impact, read_number, read_percent
from mappings.story import STORY_FIELDS, parse_story

INPUT_READERS = {
    "reach": read_number,
    "impact": read_impact,
    "confidence": read_percent,
    "effort": read_number,
    "value": read_number,
    "time_criticality": read_number,
    "risk_reduction": read_number,
    "ease": read_number,
}


def map_story(item: BacklogItem, text: Callable[[str], str | None]) -> None:
    """The user story: parsed from the description, each field a tool holds (`text(field)`, None when it holds
    none) taking the place of what the description says."""
    parsed = parse_story(item.description)
    from_fields = {field: text(field) for field in STORY_FIELDS}
    item.story = parsed.model_copy(update={k: v for k, v in from_fields.items() if v is not None})


def map_inputs(item: BacklogItem, value: Callable[[str], Any]) -> None:
    """Reads each scoring input through `value(logical)` (the tool's raw value, unwrapped to a scalar)."""
    numbers: dict[str, float | None] = {}
    for logical, reader in INPUT_READERS.items():
        raw_value = value(logical)
        number, reason = reader(raw_value)
        if number is None and reason is not None and logical == "impact":
            # ICE reads impact on 1..10; only RICE insists on 0.25..3, and the scorer says so per method.
            plain, plain_reason = read_number(raw_value)
            number, reason = (plain, None) if plain_reason is None else (None, reason)
        if reason is not None:
            item.add_problem(logical, reason, raw_value)
        numbers[logical] = number
    item.inputs = ScoringInputs(**numbers)  # one validated model, not eight attribute sets on the default one


def map_remote_values(item: BacklogItem, value: Callable[[str], Any], *, configured: Callable[[str], bool],
                      text: Callable[[Any], str | None], scalar: Callable[[Any], Any] | None = None) -> None:
    """Reads what our own fields hold now, so that a sync writes only what differs.

    `configured(logical)`: the field exists in the tool (else there is nothing to compare against); `text`
    renders the KPI result; `scalar` unwraps a number from the tool's shape (an option, a one-element list)."""
    for logical in OWNED_FIELDS:
        if not configured(logical):
            continue
        raw_value = value(logical)
        if logical == "kpi_result":
            item.remote_values[logical] = text(raw_value)
            continue
        number, reason = read_number(raw_value if scalar is None else scalar(raw_value))
        if reason is not None:
            # Someone typed into our field; we will overwrite it, but say what was there.
            item.add_problem(logical, f"owned field holds an unreadable value: {reason}", raw_value)
        if number is not None and logical == "rank" and number.is_integer():
            item.remote_values[logical] = int(number)
        else:
            item.remote_values[logical] = number
