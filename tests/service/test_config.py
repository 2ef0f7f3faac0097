"""check-config: broken files give errors naming the file, the key path and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from service.cli import app
from service.config import ConfigError, Settings, load_config

CONFIGS = Path(__file__).with_name("configs")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_JIRA_TOKEN", "jira-token-for-tests-1234")
    monkeypatch.delenv("BACKLOG_SYNC_TEST_UNSET_VARIABLE", raising=False)


def problems_of(name: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(CONFIGS / name)
    return caught.value.problems


def test_good_config_loads() -> None:
    config = load_config(CONFIGS / "good.yaml")
    assert [s.name for s in config.sources] == ["marketing-jira"]
    assert config.sources[0].auth.token.resolve() == "jira-token-for-tests-1234"


@pytest.mark.parametrize(
    ("name", "key_path", "what"),
    [
        ("missing_field.yaml", "sources[0].jql", "required field is missing"),
        ("wrong_type.yaml", "sources[0].schedule.interval_seconds", "valid integer"),
        ("unknown_kind.yaml", "sources[0]", "unknown source kind 'monday'"),
        ("secret_unset.yaml", "sources[0].auth.token",
         "environment variable BACKLOG_SYNC_TEST_UNSET_VARIABLE is not set"),
        ("inline_secret.yaml", "sources[0].auth.token", "never written inline"),
        ("unknown_key.yaml", "sources[0].scoring.methode", "unknown key"),
    ],
)
def test_broken_config_names_file_key_and_problem(name: str, key_path: str, what: str) -> None:
    problems = problems_of(name)
    matching = [p for p in problems if p.startswith(f"{CONFIGS / name}: {key_path}:")]
    assert matching, problems
    assert what in matching[0]


def test_invalid_yaml_names_the_line() -> None:
    (problem,) = problems_of("bad_yaml.yaml")
    assert "bad_yaml.yaml: not valid YAML (line" in problem


def test_inline_secret_is_never_echoed() -> None:
    problems = problems_of("inline_secret.yaml")
    assert not any("this-is-a-pasted-token" in p for p in problems)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")
    assert str(tmp_path / "nope.yaml") in caught.value.problems[0]


def test_check_config_command_reports_and_exits_nonzero() -> None:
    result = runner.invoke(app, ["check-config", "--config", str(CONFIGS / "secret_unset.yaml")])
    assert result.exit_code == 2
    assert "sources[0].auth.token" in result.output + (result.stderr or "")
    ok = runner.invoke(app, ["check-config", "--config", str(CONFIGS / "good.yaml")])
    assert ok.exit_code == 0, ok.output
    assert "1 source(s)" in ok.output


def test_config_path_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKLOG_SYNC_CONFIG", str(CONFIGS / "missing_field.yaml"))
    result = runner.invoke(app, ["check-config"])
    assert result.exit_code == 2
    assert "missing_field.yaml: sources[0].jql" in result.output + (result.stderr or "")


@pytest.mark.parametrize("token", [None, "", "changeme", "short"])
def test_placeholder_admin_token_is_refused_in_production(token: str | None) -> None:
    settings = Settings(admin_token=token, backlog_sync_env="production")
    with pytest.raises(ConfigError, match="ADMIN_TOKEN"):
        settings.checked_admin_token()


def test_strong_admin_token_is_accepted() -> None:
    assert Settings(admin_token="x" * 32).checked_admin_token() == "x" * 32


def test_a_trello_source_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"sources": [{"name": "board", "kind": "trello", "api_key": {"env": "HOME"},
                                                 "token": {"env": "HOME"}, "boards": ["abc"]}]}))
    source = load_config(path).sources[0]
    assert source.kind == "trello" and source.boards == ["abc"] and source.page_size == 1000


def test_webhooks_url_prints_the_path_token_url_the_daemon_accepts(tmp_path: Path) -> None:
    from service.webhooks import jira_path_token

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"sources": [{
        "name": "mkt", "kind": "jira", "base_url": "https://acme.atlassian.net", "jql": "project = MKT",
        "auth": {"email": "ops@example.com", "token": {"env": "HOME"}}}]}))
    token = "an-admin-token-of-thirty-two-chars!"
    result = CliRunner().invoke(app, ["webhooks", "url", "--source", "mkt", "--base-url", "https://bs.example.com/",
                                      "-c", str(path)], env={"ADMIN_TOKEN": token})
    assert result.exit_code == 0, result.output
    assert f"https://bs.example.com/webhooks/jira/mkt/{jira_path_token(token, 'mkt')}" in result.output
    missing = CliRunner().invoke(app, ["webhooks", "url", "--source", "nope", "--base-url", "https://x",
                                       "-c", str(path)], env={"ADMIN_TOKEN": token})
    assert missing.exit_code == 2 and "mkt" in missing.output
