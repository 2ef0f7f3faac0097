"""The content hash that tells a sync whether a stored item changed: stable across key order and runs, and
different whenever a hashed value differs (accents included)."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime

from mappings.model import BacklogItem, ScoringInputs, UserStory, hash_payload


def item(**changes: object) -> BacklogItem:
    values: dict[str, object] = {
        "source": "mkt", "external_id": "1", "title": "Balises title SEO — pages catégorie", "labels": ["SEO"],
        "due_date": date(2026, 12, 24), "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "story": UserStory(role="responsable SEO", want="réécrire les balises", language="fr"),
        "inputs": ScoringInputs(reach=1200, impact=2, confidence=80, effort=0.5),
    }
    values.update(changes)
    return BacklogItem(**values)  # type: ignore[arg-type]


def test_the_hash_is_of_compact_utf8_json_with_sorted_keys() -> None:
    assert hash_payload({"b": 1, "a": "é"}) == hashlib.sha256('{"a":"é","b":1}'.encode()).hexdigest()
    assert hash_payload({"b": 1, "a": "é"}) == hash_payload({"a": "é", "b": 1})


def test_equal_items_hash_alike_and_any_hashed_change_shows() -> None:
    base = hash_payload(item().hashed_values())
    assert hash_payload(item().hashed_values()) == base
    for changed in (item(title="Balises title SEO — pages categorie"),  # one accent less
                    item(labels=["SEO", "fr"]), item(due_date=None),
                    item(inputs=ScoringInputs(reach=1200, impact=2, confidence=80, effort=0.25)),
                    item(story=UserStory(role="responsable SEO", want="réécrire les balises", language="en"))):
        assert hash_payload(changed.hashed_values()) != base


def test_what_the_hash_leaves_out_does_not_change_it() -> None:
    # The tool's own updated time and the values of our fields it holds change without the item changing.
    base = hash_payload(item().hashed_values())
    assert hash_payload(item(updated_at=datetime(2026, 12, 1, tzinfo=UTC),
                             remote_values={"score": 12.5}).hashed_values()) == base
