"""The ``pointsman`` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from pointsman.cli import main


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "POINTSMAN_DATA_DIR": str(tmp_path / "data"),
        "POINTSMAN_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "POINTSMAN_SECRET_KEY": Fernet.generate_key().decode(),
    }


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def test_init_prints_an_org_key_alone_on_the_last_line(env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        main, ["init", "--admin-email", "a@example.com"], env=env
    )

    assert result.exit_code == 0, result.output
    assert last_line(result.output).startswith("psm_org_")
    assert " " not in last_line(result.output)


def test_init_twice_keeps_one_admin_and_gives_a_new_key(env: dict[str, str]) -> None:
    runner = CliRunner()

    first = runner.invoke(main, ["init", "--admin-email", "a@example.com"], env=env)
    second = runner.invoke(main, ["init", "--admin-email", "A@example.com"], env=env)

    assert second.exit_code == 0, second.output
    assert last_line(first.output) != last_line(second.output)
    from pointsman.store.db import Store

    store = Store(env["POINTSMAN_DATABASE_URL"])
    with store.engine.connect() as conn:
        from sqlalchemy import text

        assert conn.execute(text("select count(*) from users")).scalar_one() == 1
    store.dispose()


def test_api_key_create_makes_a_pat_for_a_user(env: dict[str, str]) -> None:
    runner = CliRunner()
    runner.invoke(main, ["init", "--admin-email", "a@example.com"], env=env)

    result = runner.invoke(
        main,
        ["api-key", "create", "--name", "laptop", "--user", "a@example.com"],
        env=env,
    )

    assert result.exit_code == 0, result.output
    assert last_line(result.output).startswith("psm_pat_")


def test_api_key_create_for_an_unknown_user_fails_clearly(env: dict[str, str]) -> None:
    runner = CliRunner()
    runner.invoke(main, ["init", "--admin-email", "a@example.com"], env=env)

    result = runner.invoke(
        main,
        ["api-key", "create", "--name", "x", "--user", "nobody@example.com"],
        env=env,
    )

    assert result.exit_code == 1
    assert "No user with email nobody@example.com" in result.output


def test_serve_refuses_a_store_that_was_never_initialised(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["serve", "--port", "0"], env=env)

    assert result.exit_code == 1
    assert "run 'pointsman init' first" in result.output


def test_the_generated_key_file_is_used_without_a_configured_key(
    tmp_path: Path,
) -> None:
    env = {
        "POINTSMAN_DATA_DIR": str(tmp_path / "data"),
        "POINTSMAN_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "POINTSMAN_SECRET_KEY": "",
    }

    result = CliRunner().invoke(
        main, ["init", "--admin-email", "a@example.com"], env=env
    )

    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "secret.key").stat().st_mode & 0o777 == 0o600


def test_demo_routes_each_user_to_the_promised_database() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pointsman.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    rows = {
        line.split("|")[0].strip(): line
        for line in result.stdout.splitlines()
        if "@example.com" in line and "|" in line
    }
    assert "SQLite (Production)" in rows["prod.analyst@example.com"]
    assert "Acme Corp" in rows["prod.analyst@example.com"]
    for user in ("dev.engineer", "qa.tester", "new.hire"):
        assert "SQLite (Development)" in rows[f"{user}@example.com"]
        assert "test-customer-a" in rows[f"{user}@example.com"]


def test_serve_creates_nothing_when_it_refuses(
    env: dict[str, str], tmp_path: Path
) -> None:
    CliRunner().invoke(main, ["serve", "--port", "0"], env=env)

    assert not (tmp_path / "store.db").exists()
    assert not (tmp_path / "data").exists()


def test_serve_on_an_unreachable_store_says_so_without_a_traceback(
    env: dict[str, str],
) -> None:
    env["POINTSMAN_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"

    result = CliRunner().invoke(main, ["serve", "--port", "0"], env=env)

    assert result.exit_code == 1
    assert "Cannot reach the metadata store" in result.output
    assert "Traceback" not in result.output
