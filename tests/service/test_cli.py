"""The `backlog-sync` command over the emulated Jira (real HTTP on 127.0.0.1) and a SQLite file: check-config's
exit codes and messages, where the config path comes from, migrations, the refusal of an unmigrated database,
full and incremental syncs with their writes, and the ranked backlog table."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from sandbox.common import SandboxState, ThreadedServer
from sandbox.jira import DEFAULT_EMAIL, DEFAULT_TOKEN, JiraSite, create_app
from service.cli import app
from service.db import head_revision

CONFIGS = Path(__file__).with_name("configs")
TOKEN_VAR = "CLI_TEST_JIRA_TOKEN"
SCORE = "customfield_10070"  # the sandbox's "Marketing score" field
ISSUE_ROUTE = "/rest/api/3/issue/{issueIdOrKey}"  # issue edits: where the writes go

runner = CliRunner()


def flat(text: str) -> str:
    """Rich wraps long lines at the console width; compare text with its whitespace normalised."""
    return " ".join(text.split())


def squash(text: str) -> str:
    """Without any whitespace: also survives a long path folded mid-word."""
    return "".join(text.split())


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


@dataclass
class Jira:
    site: JiraSite
    state: SandboxState
    url: str

    def requests(self) -> int:
        return sum(self.state.snapshot()["counters"].values())


@pytest.fixture(autouse=True)
def _environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh SQLite file per test, no inherited config path, and the root logger restored afterwards
    (`sync` and `serve` point it at the runner's stderr, which is closed once the command returns)."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'backlog-sync.db'}")
    monkeypatch.setenv(TOKEN_VAR, DEFAULT_TOKEN)
    monkeypatch.delenv("BACKLOG_SYNC_CONFIG", raising=False)
    monkeypatch.delenv("BACKLOG_SYNC_TEST_UNSET_VARIABLE", raising=False)
    monkeypatch.setenv("TEST_JIRA_TOKEN", "jira-token-for-tests-1234")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def jira() -> Iterator[Jira]:
    site = JiraSite()
    web = create_app(site)
    server = ThreadedServer(web)
    site.base_url = server.url
    server.start()
    yield Jira(site=site, state=web.state.sandbox, url=server.url)
    server.stop()


def write_config(path: Path, jira_url: str, names: tuple[str, ...] = ("mkt",)) -> Path:
    sources = "".join(
        f"""  - name: {name}
    kind: jira
    base_url: {jira_url}
    auth:
      email: {DEFAULT_EMAIL}
      token: {{env: {TOKEN_VAR}}}
    jql: project = MKT
"""
        for name in names
    )
    path.write_text("sources:\n" + sources, encoding="utf-8")
    return path


@pytest.fixture
def config(tmp_path: Path, jira: Jira) -> Path:
    return write_config(tmp_path / "backlog-sync.yaml", jira.url)


# -- check-config -------------------------------------------------------------------------------------------


def test_check_config_accepts_a_good_file(config: Path) -> None:
    result = invoke("check-config", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert "OK: 1 source(s), 0 objective(s)." in flat(result.stdout)
    assert result.stderr == ""


def test_check_config_refuses_the_same_file_once_its_secret_variable_is_unset(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_VAR)
    result = invoke("check-config", "--config", str(config))
    assert result.exit_code == 2
    assert squash(f"{config}: sources[0].auth.token: environment variable {TOKEN_VAR} is not set") in squash(
        result.stderr)
    assert "OK" not in result.stdout


@pytest.mark.parametrize(
    ("name", "key_path", "problem"),
    [
        ("missing_field.yaml", "sources[0].jql", "required field is missing"),
        ("wrong_type.yaml", "sources[0].schedule.interval_seconds", "Input should be a valid integer"),
        ("unknown_kind.yaml", "sources[0]", "unknown source kind 'monday'; expected one of: jira, trello, asana"),
        ("secret_unset.yaml", "sources[0].auth.token",
         "environment variable BACKLOG_SYNC_TEST_UNSET_VARIABLE is not set"),
        ("inline_secret.yaml", "sources[0].auth.token", "secrets are never written inline"),
    ],
)
def test_check_config_exits_nonzero_naming_file_key_and_problem(name: str, key_path: str, problem: str) -> None:
    path = CONFIGS / name
    result = invoke("check-config", "--config", str(path))
    assert result.exit_code == 2, result.output
    assert "problem(s)" in result.stderr
    # One line per problem, on stderr: "<file>: <key path>: <what is wrong>".
    assert squash(f"{path}: {key_path}: {problem}") in squash(result.stderr), result.stderr
    assert "OK" not in result.stdout


def test_check_config_never_echoes_an_inline_secret() -> None:
    result = invoke("check-config", "--config", str(CONFIGS / "inline_secret.yaml"))
    assert result.exit_code == 2
    assert "this-is-a-pasted-token" not in result.output


def test_check_config_names_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    result = invoke("check-config", "--config", str(missing))
    assert result.exit_code == 2
    assert squash(f"{missing}: cannot be read") in squash(result.stderr)


# -- where the config path comes from ---------------------------------------------------------------------


def test_config_path_from_the_environment(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKLOG_SYNC_CONFIG", str(config))
    result = invoke("check-config")
    assert result.exit_code == 0, result.output
    assert "1 source(s)" in result.stdout


def test_config_option_wins_over_the_environment(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = CONFIGS / "missing_field.yaml"
    monkeypatch.setenv("BACKLOG_SYNC_CONFIG", str(broken))
    assert invoke("check-config", "--config", str(config)).exit_code == 0
    assert invoke("check-config", "-c", str(config)).exit_code == 0

    monkeypatch.setenv("BACKLOG_SYNC_CONFIG", str(config))
    result = invoke("check-config", "--config", str(broken))
    assert result.exit_code == 2
    assert squash(f"{broken}: sources[0].jql") in squash(result.stderr)


def test_config_path_defaults_to_the_working_directory(
    tmp_path: Path, jira: Jira, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    missing = invoke("check-config")
    assert missing.exit_code == 2
    assert "backlog-sync.yaml: cannot be read" in flat(missing.stderr)
    write_config(tmp_path / "backlog-sync.yaml", jira.url)
    assert invoke("check-config").exit_code == 0


# -- db -----------------------------------------------------------------------------------------------------


def test_db_upgrade_on_a_fresh_sqlite_file_then_current_shows_head(tmp_path: Path) -> None:
    head = head_revision()
    assert head
    before = invoke("db", "current")
    assert before.exit_code == 0, before.output
    assert f"current: None head: {head}" in flat(before.stdout)

    upgraded = invoke("db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert "is at migration head" in flat(upgraded.stdout)
    assert (tmp_path / "backlog-sync.db").exists()

    current = invoke("db", "current")
    assert current.exit_code == 0, current.output
    assert f"current: {head} head: {head}" in flat(current.stdout)


def test_db_upgrade_follows_database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "elsewhere.db"
    result = runner.invoke(app, ["db", "upgrade"], env={"DATABASE_URL": f"sqlite:///{other}"})
    assert result.exit_code == 0, result.output
    assert other.exists()
    assert not (tmp_path / "backlog-sync.db").exists()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{other}")
    assert f"current: {head_revision()}" in flat(invoke("db", "current").stdout)


# -- an unmigrated database is refused ------------------------------------------------------------------------


def test_sync_refuses_an_unmigrated_database(config: Path, jira: Jira) -> None:
    result = invoke("sync", "--config", str(config))
    assert result.exit_code == 3, result.output
    assert "Run `backlog-sync db upgrade`" in flat(result.stderr)
    assert "has no backlog-sync tables" in flat(result.stderr)
    assert jira.requests() == 0, "nothing was read before the refusal"


def test_serve_refuses_an_unmigrated_database(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    started: list[object] = []

    def never_start(*args: object, **kwargs: object) -> None:  # noqa: ARG001
        started.append(args)
        raise AssertionError("serve must not start a server on an unmigrated database")

    monkeypatch.setattr(uvicorn, "run", never_start)
    result = invoke("serve", "--config", str(config), "--host", "127.0.0.1", "--port", "1")
    assert started == []
    assert result.exit_code == 3, result.output
    assert "Run `backlog-sync db upgrade`" in flat(result.stderr)


def test_backlog_refuses_an_unmigrated_database() -> None:
    result = invoke("backlog")
    assert result.exit_code == 3
    assert "backlog-sync db upgrade" in flat(result.stderr)


# -- sync and backlog -------------------------------------------------------------------------------------


@pytest.fixture
def synced(config: Path, jira: Jira) -> Result:
    """`db upgrade` then `sync --full`: the whole MKT backlog read, scored and written back."""
    assert invoke("db", "upgrade").exit_code == 0
    result = invoke("sync", "--full", "--config", str(config))
    assert result.exit_code == 0, result.output
    return result


def _written_count(stdout: str) -> int:
    line = next(line for line in stdout.splitlines() if line.startswith("writes: "))
    return int(line.split()[1])


def test_full_sync_reads_42_issues_and_sends_the_writes(synced: Result, jira: Jira) -> None:
    out = flat(synced.stdout)
    assert "mkt: 42 seen, 42 changed, 0 removed" in out
    planned = int(out.split(" writes planned")[0].rsplit(" ", 1)[1])
    sent = _written_count(synced.stdout)
    assert sent > 0 and sent == planned
    assert f"writes: {sent} sent, 0 failed, 0 deferred" in out
    assert jira.state.hits("PUT", ISSUE_ROUTE) > 0
    scored = [i for i in jira.site.issues.values() if i.project == "MKT" and i.fields.get(SCORE) is not None]
    assert scored, "the scores reached the emulated Jira"


def test_second_sync_plans_no_writes(synced: Result, config: Path, jira: Jira,  # noqa: ARG001
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    jira.state.reset_counters()
    monkeypatch.setenv("BACKLOG_SYNC_CONFIG", str(config))  # the path from the environment this time
    again = invoke("sync")
    assert again.exit_code == 0, again.output
    out = flat(again.stdout)
    assert "0 writes planned" in out
    assert "writes: 0 sent, 0 failed, 0 deferred" in out
    assert jira.state.hits("PUT", ISSUE_ROUTE) == 0
    assert jira.requests() > 0, "the incremental sync did ask Jira for changes"


def test_sync_of_an_unknown_source_names_the_configured_ones(tmp_path: Path, jira: Jira) -> None:
    two = write_config(tmp_path / "two.yaml", jira.url, names=("mkt", "growth"))
    assert invoke("db", "upgrade").exit_code == 0
    result = invoke("sync", "--config", str(two), "--source", "nope")
    assert result.exit_code == 2
    assert "No source named 'nope'; configured: mkt, growth" in flat(result.stderr)
    assert jira.requests() == 0


def _rows(stdout: str) -> list[list[str]]:
    """The table's data rows (the ones with a Jira key), split into cells."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in stdout.splitlines() if "MKT-" in line]


def test_backlog_prints_the_ranked_table(synced: Result) -> None:  # noqa: ARG001
    result = invoke("backlog")
    assert result.exit_code == 0, result.output
    assert "Ranked marketing backlog" in result.stdout
    rows = _rows(result.stdout)
    assert len(rows) == 30, "the default limit"
    assert all(row[0] == "mkt" and row[2].startswith("MKT-") for row in rows)
    ranks = [int(row[1]) for row in rows if row[1]]
    assert ranks[:3] == [1, 2, 3]
    assert ranks == sorted(ranks)


def test_backlog_of_one_source_with_a_limit(synced: Result) -> None:  # noqa: ARG001
    result = invoke("backlog", "--source", "mkt", "--limit", "5")
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    assert 0 < len(rows) <= 5
    assert [row[1] for row in rows] == ["1", "2", "3", "4", "5"]
    assert len({row[2] for row in rows}) == len(rows)

    other = invoke("backlog", "--source", "nope", "--limit", "5")
    assert other.exit_code == 0
    assert _rows(other.stdout) == []


def test_webhooks_register_points_a_jira_source_to_the_url_command(config: Path) -> None:
    result = invoke("webhooks", "register", "--source", "mkt", "--url", "https://bs.example/webhooks/jira",
                    "--config", str(config))
    assert result.exit_code == 2
    assert "registered in jira itself" in flat(result.stderr)
    assert "backlog-sync webhooks url --source mkt" in flat(result.stderr)


def test_webhooks_register_names_an_unknown_source(config: Path) -> None:
    result = invoke("webhooks", "register", "--source", "nope", "--url", "https://bs.example/x",
                    "--config", str(config))
    assert result.exit_code == 2
    assert "No source named 'nope'" in flat(result.stderr)


def test_webhooks_register_refuses_a_trello_source_that_could_not_verify_its_deliveries(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CLI_T_KEY", "CLI_T_TOKEN", "CLI_T_SECRET"):
        monkeypatch.setenv(name, f"{name.lower()}-0123456789abcdef")
    trello = {"kind": "trello", "base_url": "http://127.0.0.1:9", "api_key": {"env": "CLI_T_KEY"},
              "token": {"env": "CLI_T_TOKEN"}, "boards": ["AbCdEfGh"]}
    signed = {"webhook_secret": {"env": "CLI_T_SECRET"}, "webhook_url": "https://bs.example/webhooks/trello/signed"}
    path = tmp_path / "backlog-sync.yaml"
    sources = [{"name": "unsigned", **trello}, {"name": "signed", **trello, **signed},
               {"name": "nourl", **trello, "webhook_secret": signed["webhook_secret"]}]
    path.write_text(yaml.safe_dump({"sources": sources}))

    unsigned = invoke("webhooks", "register", "--source", "unsigned", "--url", signed["webhook_url"],
                      "--config", str(path))
    assert unsigned.exit_code == 2
    assert "'unsigned' has no webhook_secret" in flat(unsigned.stderr)
    elsewhere = invoke("webhooks", "register", "--source", "signed", "--url", "https://bs.example/other",
                       "--config", str(path))
    assert elsewhere.exit_code == 2
    assert "differs from the webhook_url of 'signed' (https://bs.example/webhooks/trello/signed)" in flat(
        elsewhere.stderr)
    nowhere = invoke("webhooks", "register", "--source", "nourl", "--config", str(path))
    assert nowhere.exit_code == 2 and "sources[].webhook_url of 'nourl'" in flat(nowhere.stderr)
