"""The per-tool table: how to build each tool's connector from config and which mapping functions it uses.

Adding a tool means adding one ToolAdapter here; the sync engine, outbox and webhooks are shared.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors.base import RateLimiter, RetryPolicy, WorkItemSource, credential_fingerprint, shared_limiter
from mappings.model import BacklogItem
from mappings.profile import Profile, default_profile, fold
from service.config import SourceConfig, WriteBack


@dataclass(frozen=True)
class ToolAdapter:
    kind: str
    build: Callable[[Any, RetryPolicy], WorkItemSource]
    mapping_module: str  # mappings.<tool>: to_item, owned_field_payload, comment_body
    payload_needs_extra: bool = False  # the payload depends on where the item lives (Trello's board)

    @property
    def mapping(self) -> Any:
        return importlib.import_module(self.mapping_module)

    def write_payload(
        self, values: dict[str, Any], *, profile: Profile, context: dict[str, Any], extra: dict[str, Any]
    ) -> dict[str, Any]:
        """Builds the vendor-shaped payload that sets owned fields on one item."""
        if self.payload_needs_extra:
            return self.mapping.owned_field_payload(values, profile=profile, context=context, extra=extra)
        return self.mapping.owned_field_payload(values, profile=profile, context=context)

    def owned_field_names(self, *, profile: Profile, context: dict[str, Any]) -> dict[str, str]:
        return owned_field_names(self.kind, profile=profile, context=context)

    def to_item(self, raw: dict[str, Any], *, source: str, profile: Profile, context: dict[str, Any]) -> BacklogItem:
        return self.mapping.to_item(raw, source=source, profile=profile, context=context)


def _build_jira(source: Any, policy: RetryPolicy) -> WorkItemSource:
    from connectors.jira import JiraConnector

    auth = source.auth
    return JiraConnector(
        base_url=source.base_url,
        deployment=auth.deployment,
        email=auth.email,
        token=auth.token.resolve(),
        jql=source.jql,
        board_id=source.board_id,
        page_size=source.page_size,
        overlap_minutes=source.overlap_minutes,
        policy=policy,
        limiter=RateLimiter([(max(1, int(source.requests_per_second * 10)), 10.0)]),
    )


def _build_trello(source: Any, policy: RetryPolicy) -> WorkItemSource:
    from connectors.trello import TrelloConnector

    write_back = source.write_back
    create = [write_back.score_field, write_back.rank_field] if write_back.create_missing_fields else []
    return TrelloConnector(
        base_url=source.base_url,
        api_key=source.api_key.resolve(),
        token=source.token.resolve(),
        boards=source.boards,
        page_size=source.page_size,
        set_position=source.set_position,
        create_fields=[name for name in create if name],
        policy=policy,
    )


def _build_asana(source: Any, policy: RetryPolicy) -> WorkItemSource:
    from connectors.asana import RATE_WINDOW_SECONDS, AsanaConnector, plan_requests_per_minute

    token = source.token.resolve()
    per_minute = plan_requests_per_minute(source.plan, source.requests_per_minute)
    # Asana counts requests per token, whichever source sends them: one limiter per token in the process.
    limiter = shared_limiter(f"asana-token:{credential_fingerprint(token)}",
                             [(per_minute, RATE_WINDOW_SECONDS)])
    return AsanaConnector(base_url=source.base_url, token=token, projects=source.projects, policy=policy,
                          limiter=limiter,
                          score_field=source.write_back.score_field if source.write_back.enabled else None)


TOOLS: dict[str, ToolAdapter] = {
    tool.kind: tool
    for tool in (
        ToolAdapter(kind="jira", build=_build_jira, mapping_module="mappings.jira"),
        ToolAdapter(kind="trello", build=_build_trello, mapping_module="mappings.trello", payload_needs_extra=True),
        ToolAdapter(kind="asana", build=_build_asana, mapping_module="mappings.asana"),
    )
}


def tool_for(kind: str) -> ToolAdapter:
    """Gets the adapter for a source kind; config validation guarantees the kind is known."""
    return TOOLS[kind]


OWNED_LOGICAL_FIELDS = {"score": "score_field", "rank": "rank_field", "kpi_result": "kpi_field"}


def profile_for(source: SourceConfig) -> Profile:
    """Builds a source's mapping profile: the tool default, the config's overrides, then owned field names."""
    profile = default_profile(source.kind).merged(source.mapping)
    owned: dict[str, list[str]] = {}
    for logical, attr in OWNED_LOGICAL_FIELDS.items():
        name = getattr(source.write_back, attr)
        owned[logical] = [name] if name else []
    return profile.merged({"fields": owned, "language": source.language})


def owned_fields(write_back: WriteBack) -> list[str]:
    """Returns the logical fields this source writes back (score, rank, kpi_result)."""
    if not write_back.enabled:
        return []
    return [logical for logical, attr in OWNED_LOGICAL_FIELDS.items() if getattr(write_back, attr)]


def owned_field_names(kind: str, *, profile: Profile, context: dict[str, Any]) -> dict[str, str]:
    """Maps each name and id under which the tool knows one of our owned fields to the logical field.

    Webhook events name changed fields by the tool's name or id; this tells our own fields apart.
    """
    names: dict[str, str] = {}
    for logical in OWNED_LOGICAL_FIELDS:
        for name in profile.field_names(logical):
            # Names are matched folded, as the mappings match them: "marketing score" is "Marketing score".
            names[fold(name)] = logical
    by_name = dict(names)
    for field_id, meta in _context_fields(kind, context):
        logical = by_name.get(fold(str(meta.get("name", ""))))
        if logical is not None:
            names[field_id] = logical
    return names


def owned_field_for(owned: dict[str, str], name: str) -> str | None:
    """The logical field an event's changed field (an id, or a name in any case or accents) is, if it is ours."""
    return owned.get(name) or owned.get(fold(name))


def _context_fields(kind: str, context: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Lists (field id, metadata with a name) from a connector's describe() output."""
    if kind == "trello":
        return [
            (field_id, meta)
            for board in (context.get("boards") or {}).values()
            for field_id, meta in (board.get("custom_fields") or {}).items()
        ]
    fields = context.get("fields") or context.get("custom_fields") or {}
    return list(fields.items()) if isinstance(fields, dict) else []
