"""Echo detection knows our owned fields under any case or accents, as the mappings match names folded."""

from __future__ import annotations

from mappings.profile import default_profile
from service.registry import owned_field_for, owned_field_names


def test_owned_fields_are_recognised_whatever_their_case_or_accents() -> None:
    profile = default_profile("asana").merged({"fields": {"score": ["Marketing score"], "rank": ["Rang marketing"]}})
    context = {"fields": {
        "1202000000000013": {"name": "MARKETING SCORE", "type": "number"},  # as the tool spells it
        "1202000000000014": {"name": "Marketing rang", "type": "number"},  # not ours: other words
        "1202000000000015": {"name": "Rang marketing ", "type": "number"},
        "1202000000000016": {"name": "Reach", "type": "number"},
    }}
    owned = owned_field_names("asana", profile=profile, context=context)
    assert owned_field_for(owned, "1202000000000013") == "score"  # by id, its tool name differently cased
    assert owned_field_for(owned, "1202000000000015") == "rank"
    assert owned_field_for(owned, "marketing score") == "score"  # by name, in the event's own spelling
    assert owned_field_for(owned, "RANG MARKÉTING") == "rank"
    assert owned_field_for(owned, "1202000000000014") is None
    assert owned_field_for(owned, "1202000000000016") is None and owned_field_for(owned, "Reach") is None
