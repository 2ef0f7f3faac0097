"""Database engine, sessions and migrations: SQLite file by default, PostgreSQL by DATABASE_URL."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.sql.dml import Insert, Update
from sqlmodel import Session, create_engine

MIGRATIONS = Path(__file__).with_name("migrations")


class NotMigratedError(RuntimeError):
    """The database is missing tables or migrations; the message says which command fixes it."""


def normalise_url(url: str) -> str:
    """Uses psycopg 3 for postgresql:// URLs (SQLAlchemy's default driver would be psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _json_dumps(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


# JSON columns (story, inputs, problems, ...) are written for every item of every page: orjson is 5-10x faster.
def _json_loads(value: str | bytes) -> object:
    if not isinstance(value, str | bytes | bytearray | memoryview):
        # SQLite hands back a JSON number as a number (its column affinity); SQLAlchemy expects TypeError then.
        raise TypeError(f"not JSON text: {type(value).__name__}")
    return orjson.loads(value)


_JSON = {"json_serializer": _json_dumps, "json_deserializer": _json_loads}


def make_engine(url: str) -> Engine:
    """Creates an engine; SQLite gets WAL and a busy timeout so the daemon and the CLI can share it."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **_JSON)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # noqa: ANN001, ANN202
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, **_JSON)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """Yields a session that commits on success and rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# Below this many rows SQLAlchemy's own path is cheaper: it reuses its cached compilation (compiling here costs
# about 0.25 ms), while the tuples save about 4.7 µs a row (20,000 outbox rows: 0.056 s against 0.150 s).
MANY_ROWS = 50


def execute_many(connection: Connection | Session, statement: Insert | Update, rows: Sequence[dict[str, Any]]) -> None:
    """`connection.execute(statement, rows)` for the thousands of rows of a sync, on SQLite without SQLAlchemy's
    work per row; every row names the same keys.

    SQLAlchemy builds and type-processes a parameter dict per row, which cost more than SQLite's own insert. Here
    the statement is compiled once for the keys of the first row, each column's values go through the bind
    processor SQLAlchemy would apply (JSON, aware datetimes as UTC, floats), the same object in a run of rows
    (the `now` of a batch) once, and the rows go to the driver's executemany as tuples. Where SQLAlchemy would
    supply values itself (a column default, a key the rows lack), for a statement with no bound values or with
    execution options of its own, for fewer than MANY_ROWS rows, and on every other database (PostgreSQL's
    driver sends many rows a statement already), SQLAlchemy runs it. Cursor events see the SQL text and the
    tuples, with no compiled statement."""
    if not rows:
        return
    if isinstance(connection, Session):
        connection = connection.connection()
    dialect = connection.dialect
    plain = dialect.name == "sqlite" and len(rows) >= MANY_ROWS and not statement.get_execution_options()
    compiled = statement.compile(dialect=dialect, column_keys=list(rows[0])) if plain else None
    names = compiled.positiontup if compiled is not None and compiled.positional else None
    if compiled is None or not names or not set(names) <= set(rows[0]) \
            or compiled.literal_execute_params or compiled.post_compile_params:
        connection.execute(statement, rows)
        return
    columns = []
    for name in names:
        process = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        values = [row[name] for row in rows]
        columns.append(values if process is None else _processed(process, values))
    connection.exec_driver_sql(str(compiled), list(zip(*columns, strict=True)))


_UNSET = object()


def _processed(process: Callable[[Any], Any], values: list[Any]) -> list[Any]:
    """Each value through its bind processor; a run of the very same object is processed once."""
    out = []
    last: Any = _UNSET
    last_out = None
    for value in values:
        if value is not last:
            last, last_out = value, process(value)
        out.append(last_out)
    return out


def lock_source(db: Session, source: str) -> None:
    """Serialises whole-source work (rescoring, write planning) across replicas: a PostgreSQL advisory lock
    held until the transaction ends. SQLite serialises writers by itself."""
    if db.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"backlog-sync:{source}".encode()).digest()[:8], "big", signed=True)
        db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str, revision: str = "head") -> None:
    """Applies the migrations up to `revision` (the `backlog-sync db upgrade` command)."""
    command.upgrade(alembic_config(url), revision)


def check_migrated(engine: Engine) -> None:
    """Raises NotMigratedError unless the database is at the newest migration."""
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        where = redact_url(str(engine.url))
        state = "has no backlog-sync tables" if current is None else f"is at migration {current}, not {head}"
        raise NotMigratedError(
            f"The database {where} {state}. Run `backlog-sync db upgrade` (with the same DATABASE_URL) first."
        )


def redact_url(url: str) -> str:
    """Hides the password in a database URL."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL is shown without its credentials part
        return url.split("@")[-1]
