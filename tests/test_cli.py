"""The statemw command line against real diskcache stores."""

from __future__ import annotations

import io
import json
import sqlite3
import time
from pathlib import Path

import pytest

from statemw import Store, generate_key
from statemw.cli import main, parser


@pytest.fixture
def url(tmp_path: Path) -> str:
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
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(3):
        conversation(url)
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert run("--store", url, "purge")[0] == 0
    assert "purging [" in terminal.getvalue()
    assert "/5" in terminal.getvalue()  # three sessions, the user's shared record and index


def test_no_progress_bar_when_not_on_a_terminal(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    conversation(url)
    assert run("--store", url, "purge")[0] == 0
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
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    conversation(url)
    holder = sqlite3.connect(url.removeprefix("diskcache://") + "/cache.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        assert run("--store", url, "--wait", "0.2", "ls")[0] == 2
        assert time.monotonic() - started < 5
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert capsys.readouterr().err == (
        f"statemw: error: diskcache {url.removeprefix('diskcache://')!r} is locked by another "
        "process (gave up after 0.2 s)\n"
    )
    assert run("--store", url, "ls")[0] == 0  # and once it is free, it works


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
