"""The service's configuration: one YAML file for sources, mappings, scoring, schedules and objectives,
plus process settings from the environment. Secrets are referenced by variable name or file path only."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from mappings.model import Method

DEFAULT_DATABASE_URL = "sqlite:///backlog-sync.db"
PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "admin", "token", "password"}


class ConfigError(Exception):
    """A configuration problem; `problems` lists each one as 'file: key.path: what is wrong'."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SecretRef(Strict):
    """Where a secret lives: an environment variable's name or a file's path, never the value itself."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' (a variable name) or 'file' (a path)")
        return self

    def resolve(self) -> str:
        """Reads the secret; raises ValueError saying which variable or file is missing."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None or value == "":
                raise ValueError(f"environment variable {self.env} is not set")
            return value
        assert self.file is not None
        try:
            return self.file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"secret file {self.file} cannot be read: {exc.strerror}") from exc

    def describe(self) -> str:
        return f"${self.env}" if self.env else f"file {self.file}"


def _refuse_inline_secret(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError("secrets are never written inline; use {env: VARIABLE_NAME} or {file: /path}")
    return value


Secret = Annotated[SecretRef, Field(description="{env: NAME} or {file: PATH}")]


class Schedule(Strict):
    interval_seconds: int = Field(300, ge=10, description="incremental sync every N seconds")
    reconcile_every: int = Field(12, ge=1, description="every Nth run also notices deletions")
    enabled: bool = True


class Scoring(Strict):
    method: Method = Method.RICE
    value_threshold: float = 5.0  # value-vs-effort: value >= this is "high"
    effort_threshold: float = 5.0  # value-vs-effort: effort >= this is "high"


class WriteBack(Strict):
    """Which fields we own in the tool and how results go back."""

    enabled: bool = True
    score_field: str | None = "Marketing score"
    rank_field: str | None = "Marketing rank"
    kpi_field: str | None = None  # a text field for the KPI result
    kpi_comments: bool = True
    kpi_change_threshold: float = Field(0.05, ge=0, description="relative change that warrants a new KPI write")
    native_rank: bool = False  # Jira: also order the board (agile rank)
    create_missing_fields: bool = False  # create missing custom fields, only when asked


_PAGE_DIMENSIONS = frozenset({"landingPage", "landingPagePlusQueryString", "pagePath", "pagePathPlusQueryString",
                              "pageLocation"})


class ReachFromGA4(Strict):
    """Per source: fill an item's RICE reach from GA4 traffic to the page (or channel, segment) it names.

    A reach the user entered always wins; a derived one is marked as such on the item."""

    names: Literal["page", "channel", "segment"] = "page"  # what an item names; a page by a label or a line
    # The GA4 dimension the named value is matched against: by default landingPage for a page and
    # sessionDefaultChannelGroup for a channel; a segment has no natural one and must name it.
    dimension: str = "landingPage"
    metric: str = "activeUsers"
    days: int = Field(28, ge=1, le=365, description="reach = the metric over the last N complete days")
    label_prefix: str = Field("page:", min_length=1, description="a label 'page:/landing/spring-sale' names a page")
    dimension_filter: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def dimension_fits(self) -> ReachFromGA4:
        from service.kpi.expression import check_dimension, check_summable_metric

        if "dimension" not in self.model_fields_set:
            if self.names == "segment":
                raise ValueError("names: segment needs a 'dimension' to match the segment against (e.g. "
                                 "audienceName, newVsReturning or a customUser: dimension); GA4 has no segment one")
            if self.names == "channel":
                self.dimension = "sessionDefaultChannelGroup"
        check_dimension(self.dimension)
        if (self.dimension in _PAGE_DIMENSIONS) != (self.names == "page"):
            raise ValueError(f"dimension {self.dimension!r} does not hold {self.names} names: a page is matched "
                             f"against a page dimension ({', '.join(sorted(_PAGE_DIMENSIONS))}), a channel or "
                             "segment against another one")
        check_summable_metric(self.metric)
        for dimension in self.dimension_filter:
            check_dimension(dimension)
        return self


class SourceBase(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    schedule: Schedule = Field(default_factory=Schedule)
    scoring: Scoring = Field(default_factory=Scoring)
    write_back: WriteBack = Field(default_factory=WriteBack)
    mapping: dict[str, Any] = Field(default_factory=dict, description="overrides of the tool's mapping profile")
    language: Literal["en", "fr"] = "en"
    webhook_secret: Secret | None = None  # Jira: the webhook's signing secret; Trello: the app secret
    webhook_url: str | None = Field(None, pattern=r"^https?://", description="public callback URL, as registered")
    reach_from_ga4: ReachFromGA4 | None = None

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _no_inline_webhook_secret(cls, value: Any) -> Any:
        return _refuse_inline_secret(value)


class JiraAuth(Strict):
    deployment: Literal["cloud", "datacenter"] = "cloud"
    email: str | None = None  # Cloud: the account's email; the token is its API token
    token: Secret  # Cloud API token, or Data Center personal access token

    @field_validator("token", mode="before")
    @classmethod
    def _no_inline(cls, value: Any) -> Any:
        return _refuse_inline_secret(value)

    @model_validator(mode="after")
    def cloud_needs_email(self) -> JiraAuth:
        if self.deployment == "cloud" and not self.email:
            raise ValueError("Jira Cloud needs 'email' (the account the API token belongs to)")
        return self


class JiraSource(SourceBase):
    kind: Literal["jira"]
    base_url: str = Field(pattern=r"^https?://")
    auth: JiraAuth
    jql: str = Field(min_length=1, description="the scope, e.g. 'project = MKT'")
    board_id: int | None = None
    overlap_minutes: int = Field(10, ge=0, le=1440)
    page_size: int = Field(100, ge=1, le=100)
    requests_per_second: float = Field(10.0, gt=0)


class TrelloSource(SourceBase):
    kind: Literal["trello"]
    base_url: str = Field("https://api.trello.com", pattern=r"^https?://")
    api_key: Secret
    token: Secret
    boards: list[str] = Field(min_length=1)
    set_position: bool = False  # also order cards within their list by rank
    page_size: int = Field(1000, ge=1, le=1000)

    @field_validator("api_key", "token", mode="before")
    @classmethod
    def _no_inline(cls, value: Any) -> Any:
        return _refuse_inline_secret(value)


class AsanaSource(SourceBase):
    kind: Literal["asana"]
    base_url: str = Field("https://app.asana.com/api/1.0", pattern=r"^https?://")
    token: Secret
    projects: list[str] = Field(min_length=1)
    plan: Literal["free", "paid"] = "free"
    requests_per_minute: int | None = Field(None, ge=1)

    @field_validator("token", mode="before")
    @classmethod
    def _no_inline(cls, value: Any) -> Any:
        return _refuse_inline_secret(value)


class GA4Source(Strict):
    """A Google Analytics 4 property: the metrics source for objectives and derived reach."""

    property_id: str = Field(pattern=r"^(properties/)?\d+$")
    endpoint: str | None = None  # e.g. a sandbox URL; None means Google's
    credentials_file: Path | None = None  # service-account JSON; None means application default
    anonymous: bool = False  # sandbox only
    lookback_days: int = Field(3, ge=0, le=30, description="the last N days are re-read every run (GA4 revises them)")
    backfill_chunk_days: int = Field(92, ge=1, le=366, description="days per report while backfilling")
    time_zone: str = Field("UTC", description="the property's reporting time zone: it decides what 'today' is")
    reserve_fraction: float = Field(0.05, ge=0, lt=1, description="stop when the property's tokens fall under this")
    schedule: Schedule = Field(default_factory=lambda: Schedule(interval_seconds=3600))


    @field_validator("time_zone")
    @classmethod
    def known_time_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone name (e.g. Europe/Paris, America/Los_Angeles)") from None
        return value


class Baseline(Strict):
    """What the objective is measured against: a past period (the same calendar dates, whole years earlier:
    `period: previous_year`, or explicit start and end), or a value for a window-long period."""

    period: Literal["previous_year"] | None = None
    start: date | None = None
    end: date | None = None
    value: float | None = None

    @model_validator(mode="after")
    def period_or_value(self) -> Baseline:
        given = [self.period is not None, self.start is not None or self.end is not None, self.value is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of: period: previous_year, a past period (start and end), or a value")
        if given[1] and (self.start is None or self.end is None):
            raise ValueError("a baseline period needs both start and end")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError("start is after end")
        return self


class Objective(Strict):
    """A SMART objective on a GA4 metric: specific (metric and filter), measurable (baseline and target),
    assigned (owner), time-bound (window and milestones), with the thresholds of its statuses."""

    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)  # the KPI tables hold it in VARCHAR(64)
    name: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    description: str | None = None
    aliases: list[str] = Field(default_factory=list, description="other names items use for it in their KPI field")
    metric: str = Field(description="a GA4 metric, or an expression of them: 'keyEvents / sessions'")
    dimension_filter: dict[str, str] = Field(default_factory=dict, description="GA4 dimension = exact value, ANDed")
    start: date
    end: date
    baseline: Baseline
    target: str | float  # "+40%" (relative to the baseline) or an absolute number for the whole window
    milestones: Literal["quarterly", "monthly"] = "quarterly"
    split: Literal["linear", "compound", "even"] = "linear"
    on_track: float = Field(1.0, gt=0)
    at_risk: float = Field(0.9, gt=0)

    @field_validator("metric")
    @classmethod
    def metric_is_ga4(cls, value: str) -> str:
        from service.kpi.expression import STORED_METRICS_LENGTH, MetricExpression

        metrics = ",".join(MetricExpression.parse(value).metrics)
        if len(metrics) > STORED_METRICS_LENGTH:
            raise ValueError(f"the expression's metrics add up to {len(metrics)} characters "
                             f"({metrics[:40]}...); at most {STORED_METRICS_LENGTH} can be stored")
        return value

    @field_validator("dimension_filter")
    @classmethod
    def filter_dimensions(cls, value: dict[str, str]) -> dict[str, str]:
        from service.kpi.expression import STORED_FILTER_LENGTH, check_dimension, filters_json

        for dimension, wanted in value.items():
            check_dimension(dimension)
            if dimension == "date":
                raise ValueError("'date' cannot be filtered on: the window and the baseline set the dates")
            if not str(wanted).strip():
                raise ValueError(f"the value for {dimension!r} is empty")
        stored = filters_json(value.items())
        if len(stored) > STORED_FILTER_LENGTH:
            raise ValueError(f"the filter is stored as {len(stored)} characters of JSON; at most "
                             f"{STORED_FILTER_LENGTH} fit (shorten or drop a value)")
        return value

    @field_validator("baseline", mode="before")
    @classmethod
    def baseline_shorthand(cls, value: Any) -> Any:
        return {"period": value} if isinstance(value, str) else value

    @field_validator("end")
    @classmethod
    def end_after_start(cls, value: date, info: ValidationInfo) -> date:
        start = info.data.get("start")
        if start is not None and start >= value:
            raise ValueError("end must be after start")
        return value

    @field_validator("baseline")
    @classmethod
    def baseline_before_window(cls, value: Baseline, info: ValidationInfo) -> Baseline:
        start, end = info.data.get("start"), info.data.get("end")
        if value.start is None or start is None or end is None:
            return value
        assert value.end is not None
        years = start.year - value.start.year
        if value.end >= start or years < 1 or (value.start.month, value.start.day) != (start.month, start.day) \
                or (value.end.month, value.end.day) != (end.month, end.day) or end.year - value.end.year != years:
            raise ValueError(f"a baseline period covers the window's dates ({start}..{end}) whole years earlier, "
                             f"e.g. {start.replace(year=start.year - 1)}..{end.replace(year=end.year - 1)}; "
                             "or use period: previous_year")
        return value

    @field_validator("target")
    @classmethod
    def target_form(cls, value: str | float) -> str | float:
        if isinstance(value, str):
            text = value.strip()
            try:
                if not (text.endswith("%") and text[0] in "+-"):
                    raise ValueError
                percent = float(text[1:-1])
            except (ValueError, IndexError):
                raise ValueError("a relative target looks like '+40%'; an absolute one is a number") from None
            if percent <= -100 or percent == 0:
                raise ValueError("a relative target is a change above -100% and not 0%")
        elif value <= 0:
            raise ValueError("an absolute target is a number above zero")
        return value

    @field_validator("at_risk")
    @classmethod
    def at_risk_below_on_track(cls, value: float, info: ValidationInfo) -> float:
        on_track = info.data.get("on_track")
        if on_track is not None and value > on_track:
            raise ValueError("at_risk must not exceed on_track")
        return value

    @property
    def baseline_years_back(self) -> int | None:
        """How many years before the window the baseline period lies (None for a value baseline)."""
        if self.baseline.period == "previous_year":
            return 1
        if self.baseline.start is not None:
            return self.start.year - self.baseline.start.year
        return None

    def baseline_period(self) -> tuple[date, date] | None:
        """The baseline's first and last day (None for a value baseline)."""
        years = self.baseline_years_back
        if years is None:
            return None
        from service.kpi.progress import years_earlier

        return years_earlier(self.start, years), years_earlier(self.end, years)


SourceConfig = Annotated[JiraSource | TrelloSource | AsanaSource, Field(discriminator="kind")]


class AppConfig(Strict):
    sources: list[SourceConfig] = Field(default_factory=list)
    ga4: GA4Source | None = None
    objectives: list[Objective] = Field(default_factory=list)
    outbox_interval_seconds: int = Field(10, ge=1)
    webhook_debounce_seconds: float = Field(0.25, ge=0, le=60, description="a burst for one item = one refresh")
    lease_seconds: int = Field(
        120, ge=2, le=3600,
        description="a sync holds its source this long, renewed with every stored batch of pages; "
                    "a dead holder blocks it no longer",
    )
    claim_seconds: int = Field(
        120, ge=2, le=3600,
        description="how long a replica holds claimed inbox and outbox rows; after that (it died) another takes them",
    )

    @model_validator(mode="after")
    def unique_names(self) -> AppConfig:
        seen: set[str] = set()
        for source in self.sources:
            if source.name in seen:
                raise ValueError(f"two sources are named {source.name!r}")
            seen.add(source.name)
        keys = [o.key for o in self.objectives]
        if len(keys) != len(set(keys)):
            raise ValueError("objective keys must be unique")
        if self.objectives and self.ga4 is None:
            raise ValueError("objectives need a 'ga4' section to read their metric from")
        if self.ga4 is None and any(source.reach_from_ga4 for source in self.sources):
            raise ValueError("reach_from_ga4 needs a 'ga4' section to read traffic from")
        return self

    def source(self, name: str) -> SourceConfig | None:
        """Gets a source by its name."""
        return next((s for s in self.sources if s.name == name), None)


def _key_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for piece in loc:
        if isinstance(piece, int):
            parts.append(f"[{piece}]")
        elif piece in ("jira", "trello", "asana") and parts and parts[-1].endswith("]"):
            continue  # the discriminated union adds the tag to the path; the user never wrote it
        else:
            parts.append(("." if parts else "") + str(piece))
    return "".join(parts) or "(top level)"


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown key (check the spelling)"
    if kind == "union_tag_invalid":
        tag = error.get("input", {}).get("kind") if isinstance(error.get("input"), dict) else None
        return f"unknown source kind {tag!r}; expected one of: jira, trello, asana"
    if kind == "union_tag_not_found":
        return "missing 'kind' (one of: jira, trello, asana)"
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


def load_config(path: str | Path, *, check_secrets: bool = True) -> AppConfig:
    """Reads and validates a config file; raises ConfigError listing every problem with its key path."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot be read: {exc.strerror}"]) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError([f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}"]) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of keys, not {type(raw).__name__}"])
    try:
        config = AppConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{path}: {_key_path(e['loc'])}: {_message(e)}" for e in exc.errors()]
        raise ConfigError(problems) from None
    if check_secrets:
        problems = [f"{path}: {where}: {reason}" for where, reason in secret_problems(config)]
        if problems:
            raise ConfigError(problems)
    return config


def _secret_refs(config: AppConfig) -> list[tuple[str, SecretRef]]:
    refs: list[tuple[str, SecretRef]] = []
    for i, source in enumerate(config.sources):
        base = f"sources[{i}]"
        if isinstance(source, JiraSource):
            refs.append((f"{base}.auth.token", source.auth.token))
        elif isinstance(source, TrelloSource):
            refs += [(f"{base}.api_key", source.api_key), (f"{base}.token", source.token)]
        elif isinstance(source, AsanaSource):
            refs.append((f"{base}.token", source.token))
        if source.webhook_secret is not None:
            refs.append((f"{base}.webhook_secret", source.webhook_secret))
    return refs


def secret_problems(config: AppConfig) -> list[tuple[str, str]]:
    """Returns (key path, reason) for each secret that cannot be read."""
    problems = []
    for where, ref in _secret_refs(config):
        try:
            ref.resolve()
        except ValueError as exc:
            problems.append((where, str(exc)))
    return problems


def configured_secrets(config: AppConfig) -> list[str]:
    """Returns every secret value the config names that can be read (for log redaction and tests)."""
    values = []
    for _, ref in _secret_refs(config):
        try:
            values.append(ref.resolve())
        except ValueError:
            continue
    return values


class Settings(BaseSettings):
    """Process settings from the environment (never from the YAML file)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    backlog_sync_config: Path = Path("backlog-sync.yaml")
    database_url: str = DEFAULT_DATABASE_URL
    admin_token: str | None = None
    backlog_sync_env: Literal["development", "production"] = "production"
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    max_webhook_body_bytes: int = 1_000_000
    run_scheduler: bool = True

    def checked_admin_token(self) -> str:
        """Returns the admin token; refuses a missing or placeholder one outside development."""
        token = self.admin_token or ""
        if token.lower() in PLACEHOLDER_SECRETS or len(token) < 16:
            if self.backlog_sync_env == "development" and token:
                return token
            raise ConfigError([
                "ADMIN_TOKEN: set it to a random value of at least 16 characters "
                "(for example: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
            ])
        return token
