"""The statemw command line against real diskcache stores."""

from __future__ import annotations

import io
import json
import sqlite3
import time
from pathlib import Path

import pytest

from statemw import Store, generate_key
from statemw.backends import postgres_ops
from statemw.cli import main, parser
from tests import postgres_server
from tests.support import store_url


@pytest.fixture(params=["diskcache", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store on each backend the command is mostly pointed at (PostgreSQL in its own schema)."""
    return store_url(str(request.param), tmp_path)


@pytest.fixture
def disk_url(tmp_path: Path) -> str:
    return f"diskcache://{tmp_path / 'store'}"


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def conversation(url: str, user: str = "harsh", **options: object) -> str:
    store = Store(url, **options)  # type: ignore[arg-type]
    session = store.create(user_id=user)
    session["destination"] = "Berlin"
    session.user["home"] = "SF"
    session.add_message("user", "Find flights to Berlin")
    session.add_message("agent", "When would you like to travel?")
    session.save()
    store.close()
    return session.id


def test_ls_lists_sessions_and_filters_by_user(url: str) -> None:
    mine, theirs = conversation(url), conversation(url, user="other")
    code, out = run("--store", url, "ls")
    assert code == 0
    assert mine in out
    assert theirs in out
    code, out = run("--store", url, "ls", "--user", "harsh", "--json")
    assert [s["id"] for s in json.loads(out)] == [mine]


def test_show_prints_state_and_messages(url: str) -> None:
    sid = conversation(url)
    code, out = run("--store", url, "show", sid)
    assert code == 0
    assert '"destination": "Berlin"' in out
    assert "user: Find flights to Berlin" in out
    assert '"home": "SF"' in out


@pytest.mark.parametrize("fmt", ["json", "openai", "anthropic"])
def test_export_writes_the_conversation(url: str, tmp_path: Path, fmt: str) -> None:
    sid = conversation(url)
    target = tmp_path / "out.json"
    assert run("--store", url, "export", sid, "--format", fmt, "--output", str(target))[0] == 0
    data = json.loads(target.read_text())
    if fmt == "json":
        assert data["state"] == {"destination": "Berlin"}
        assert [m["role"] for m in data["messages"]] == ["user", "agent"]
    elif fmt == "openai":
        assert [m["role"] for m in data] == ["user", "assistant"]
    else:
        assert [m["role"] for m in data["messages"]] == ["user", "assistant"]


def test_rm_forget_user_purge_and_stats(url: str) -> None:
    a, _ = conversation(url), conversation(url)
    conversation(url, user="other")
    assert run("--store", url, "rm", a)[0] == 0
    assert json.loads(run("--store", url, "stats", "--json")[1])["sessions"] == 2
    assert run("--store", url, "forget-user", "harsh")[1].startswith("forgot user 'harsh': 1")
    assert run("--store", url, "purge")[0] == 0
    assert json.loads(run("--store", url, "stats", "--json")[1])["users"] == 1


def test_errors_are_one_line_and_exit_2(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    conversation(url)
    assert run("--store", url, "show", "no-such-session")[0] == 2
    assert capsys.readouterr().err.startswith("statemw: error: no session 'no-such-session'")
    assert run("--store", "ftp://nowhere", "ls")[0] == 2
    assert "unknown store URL" in capsys.readouterr().err
    assert run("--store", url, "rm", "nothing-here")[0] == 2


def test_an_encrypted_store_needs_its_key(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    key = generate_key()
    sid = conversation(url, encryption_key=key)
    assert run("--store", url, "show", sid)[0] == 2
    assert "encrypted" in capsys.readouterr().err
    code, out = run("--store", url, "--encryption-key", key, "show", sid)
    assert code == 0
    assert "Berlin" in out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_long_sweeps_draw_a_progress_bar_on_a_terminal(
    disk_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(3):
        conversation(disk_url)
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert run("--store", disk_url, "purge")[0] == 0
    assert "purging [" in terminal.getvalue()
    assert "/5" in terminal.getvalue()  # three sessions, the user's shared record and index


def test_no_progress_bar_when_not_on_a_terminal(
    disk_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    conversation(disk_url)
    assert run("--store", disk_url, "purge")[0] == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("command", [["ls"], ["forget-user", "harsh"], ["purge"], ["stats"]])
def test_a_directory_without_a_store_is_an_error_and_nothing_is_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    typo = tmp_path / "typo"
    assert run("--store", f"diskcache://{typo}", *command)[0] == 2
    assert capsys.readouterr().err == f"statemw: error: no store at diskcache://{typo} " + (
        f"(no {typo / 'cache.db'})\n"
    )
    assert not typo.exists()
    tmp_path.joinpath("empty").mkdir()
    assert run("--store", f"diskcache://{tmp_path / 'empty'}", *command)[0] == 2
    assert list(tmp_path.joinpath("empty").iterdir()) == []


def test_a_store_locked_by_another_process_gives_up_after_the_wait(
    disk_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    conversation(disk_url)
    holder = sqlite3.connect(
        disk_url.removeprefix("diskcache://") + "/cache.db", isolation_level=None
    )
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        assert run("--store", disk_url, "--wait", "0.2", "ls")[0] == 2
        assert time.monotonic() - started < 5
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert capsys.readouterr().err == (
        f"statemw: error: diskcache {disk_url.removeprefix('diskcache://')!r} is locked by another "
        "process (gave up after 0.2 s)\n"
    )
    assert run("--store", disk_url, "ls")[0] == 0  # and once it is free, it works


def test_the_default_wait_for_a_locked_store_is_a_few_seconds() -> None:
    assert parser().parse_args(["ls"]).wait == 3.0


def test_an_encrypted_store_lists_user_ids_and_key_names_as_the_app_knows_them(url: str) -> None:
    key = generate_key()
    sid = conversation(url, encryption_key=key)
    code, out = run("--store", url, f"--encryption-key={key}", "ls", "--json")
    assert code == 0
    [facts] = json.loads(out)
    assert (facts["id"], facts["user"], facts["keys"]) == (sid, "harsh", ["destination"])
    code, out = run("--store", url, f"--encryption-key={key}", "ls")
    assert "user=harsh" in out


def test_purge_removes_expired_sessions_and_stats_tells_them_apart(url: str) -> None:
    an_hour_ago = time.time() - 3600
    gone = conversation(url, user="gone", ttl=60, clock=lambda: an_hour_ago)
    kept = conversation(url, user="kept")
    code, out = run("--store", url, "ls", "--json")
    assert (code, [s["id"] for s in json.loads(out)]) == (0, [kept])  # expired: not listed
    stats = json.loads(run("--store", url, "stats", "--json")[1])
    assert (stats["sessions"], stats["users"], stats["messages"]) == (1, 1, 2)
    code, out = run("--store", url, "purge")
    assert code == 0
    if url.startswith("postgresql"):  # rows stay until a purge (diskcache drops its own)
        assert out == "purged 1 expired session(s)\n"
        rows = postgres_server.execute(f'SELECT sid FROM "{_schema_of(url)}".sessions ORDER BY sid')
        assert rows == [(kept,), ("~u:kept",)]  # the expired session and its user's record: gone
    assert json.loads(run("--store", url, "stats", "--json")[1])["expired"] == 0
    assert run("--store", url, "show", gone)[0] == 2
    assert run("--store", url, "show", kept)[0] == 0


# -- a PostgreSQL schema without a store -----------------------------------------------------------

NO_SUCH_SESSION = "a" * 24
READ_ONLY_COMMANDS = [
    ["ls"],
    ["ls", "--user", "harsh"],
    ["show", NO_SUCH_SESSION],
    ["export", NO_SUCH_SESSION],
    ["rm", NO_SUCH_SESSION],
    ["forget-user", "harsh"],
    ["purge"],
    ["stats"],
]


def _schema_of(url: str) -> str:
    return url.rsplit("schema=", 1)[1]


def _tables_in(schema: str) -> list[str] | None:
    """The tables of a schema, None when the schema does not exist."""
    if not postgres_server.execute(f"SELECT 1 FROM pg_namespace WHERE nspname = '{schema}'"):
        return None
    rows = postgres_server.execute(
        f"SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE n.nspname = '{schema}'"
    )
    return [str(name) for (name,) in rows]


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=lambda c: "-".join(c[:2]))
def test_a_postgres_schema_without_a_store_is_an_error_and_nothing_is_created(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    url = postgres_server.isolated_url()  # a fresh schema name: nothing made yet
    schema = _schema_of(url)
    target = postgres_ops.settings(url, {}).target
    assert run("--store", url, *command)[0] == 2
    assert capsys.readouterr().err == (
        f"statemw: error: no store at postgres {target}: schema {schema!r} does not exist\n"
    )
    assert _tables_in(schema) is None

    postgres_server.execute(f'CREATE SCHEMA "{schema}"')  # someone else's, or an empty one
    assert run("--store", url, *command)[0] == 2
    assert capsys.readouterr().err == (
        f"statemw: error: no store at postgres {target}: schema {schema!r} has no statemw tables\n"
    )
    assert _tables_in(schema) == []


def test_a_copy_from_a_postgres_schema_without_a_store_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = postgres_server.isolated_url()
    assert run("copy", "--from", source, "--to", f"diskcache://{tmp_path / 'to'}")[0] == 2
    assert "no store at postgres" in capsys.readouterr().err
    assert _tables_in(_schema_of(source)) is None


def test_the_commands_read_a_postgres_store_they_did_not_make(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The check costs nothing once the store is there: an app's store reads as ever."""
    url = postgres_server.isolated_url()
    sid = conversation(url)
    for command in (["ls"], ["show", sid], ["stats"]):
        assert run("--store", url, *command)[0] == 0, capsys.readouterr().err
    assert run("--store", url, "rm", sid)[0] == 0
    assert run("--store", url, "ls")[1] == "no sessions\n"
