"""Mapping profiles: per-tool tables that turn a tool's names (issue types, labels, lists, sections,
custom fields) into the backlog model's types, statuses and inputs. Shipped defaults live in
profiles/<tool>.yaml; a source's `mapping:` block in the config overrides them key by key."""

from __future__ import annotations

import functools
import unicodedata
from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from mappings.model import ItemType, Status


@functools.lru_cache(maxsize=8192)
def fold(name: str) -> str:
    """Folds a name for matching: case, accents and surrounding space do not matter ("À faire" == "a faire")."""
    decomposed = unicodedata.normalize("NFKD", name.strip().casefold().replace("\u2019", "'"))
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


class Profile(BaseModel):
    """How one tool's names map onto the model. All name keys are matched folded (see `fold`)."""

    model_config = ConfigDict(extra="forbid")

    # Tool type name (Jira issue type, Asana enum option) -> item type.
    types: dict[str, ItemType] = Field(default_factory=dict)
    # Label / tag name -> item type; checked when `types` gives nothing (or gives "other").
    label_types: dict[str, ItemType] = Field(default_factory=dict)
    # Tool status name (Jira status, Trello list, Asana section) -> status.
    statuses: dict[str, Status] = Field(default_factory=dict)
    # Jira statusCategory key (new, indeterminate, done) -> status, used when `statuses` has no entry.
    status_categories: dict[str, Status] = Field(default_factory=dict)
    # Logical input or story field -> the tool's custom field name(s) holding it, first found wins.
    fields: dict[str, list[str]] = Field(default_factory=dict)
    # Language of comments and text we write back ("en" or "fr").
    language: str = "en"

    def item_type(self, type_name: str | None, labels: list[str]) -> ItemType | None:
        """Returns the item type for a tool type name and labels, or None when nothing matches."""
        if type_name:
            found = _lookup(self.types, type_name)
            if found is not None and found is not ItemType.OTHER:
                return found
        for label in labels:
            found = _lookup(self.label_types, label)
            if found is not None:
                return found
        if type_name:
            return _lookup(self.types, type_name)
        return None

    def status(self, status_name: str | None, category: str | None = None) -> Status | None:
        """Returns the status for a tool status name (or its category), or None when nothing matches."""
        if status_name:
            found = _lookup(self.statuses, status_name)
            if found is not None:
                return found
        if category:
            return _lookup(self.status_categories, category)
        return None

    def field_names(self, logical: str) -> list[str]:
        """Returns the tool field names that may hold a logical field (e.g. "reach")."""
        return self.fields.get(logical, [])

    def merged(self, overrides: dict[str, Any] | None) -> Profile:
        """Returns a copy with a config `mapping:` block laid over it (dicts merge, scalars replace)."""
        if not overrides:
            return self
        data = self.model_dump(mode="json")
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return Profile.model_validate(data)


def _lookup(table: dict[str, Any], name: str) -> Any:
    folded = fold(name)
    for key, value in table.items():
        if fold(key) == folded:
            return value
    return None


@cache
def default_profile(tool: str) -> Profile:
    """Loads the shipped profile for a tool ("jira", "trello", "asana")."""
    text = resources.files("mappings").joinpath("profiles", f"{tool}.yaml").read_text(encoding="utf-8")
    return Profile.model_validate(yaml.safe_load(text) or {})
