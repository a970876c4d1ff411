"""The `statemw` command: look into a store, export a conversation, delete, purge.

    statemw --store URL ls [--user U]          sessions, newest last
    statemw show SID                           header, state, user state, last messages
    statemw export SID --format openai|anthropic|json [--output FILE]
    statemw rm SID | forget-user U | purge | stats
    statemw copy --from URL --to URL [--user U | --session SID]   between any two stores

--store defaults to STATEMW_URL, else the default diskcache directory. A command never creates a
store (but copy's target): a diskcache directory or a PostgreSQL schema without one is an error.
Errors are one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from statemw.codec import META_KEY
from statemw.errors import StateError
from statemw.records import SessionHeader
from statemw.store import Store, default_url
from statemw.transfer import copy_sessions

EXPORT_PAGE = 256
WAIT = 3.0
"""Seconds a command waits for a diskcache store another process holds locked (--wait)."""


def open_store(
    url: str, keys: list[str] | None, *, wait: float = WAIT, create: bool = False
) -> Store:
    """A Store the command looks into: a diskcache directory or PostgreSQL schema only if it
    holds a store (unless `create`), and waiting at most `wait` seconds for another process's
    diskcache lock."""
    options: dict[str, Any] = {}
    scheme = url.split("://", 1)[0].lower()
    if scheme == "diskcache":
        options = {"timeout": wait, "create": create}
    elif scheme in ("postgresql", "postgres"):
        options = {"create": create}
    return Store(url, encryption_key=keys, **options)


class ProgressBar:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, label: str, total: int | None, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.done = 0
        self.shown = self.stream.isatty()
        self._last = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.shown and (now - self._last > 0.1 or self.done == self.total):
            self._last = now
            if self.total:
                filled = int(30 * self.done / self.total)
                bar = "#" * filled + "-" * (30 - filled)
                self.stream.write(f"\r{self.label} [{bar}] {self.done:,}/{self.total:,}")
            else:
                self.stream.write(f"\r{self.label} {self.done:,}")
            self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _names(store: Store, header: SessionHeader) -> tuple[str | None, list[str]]:
    """The user id and state key names as the app knows them (sealed ones opened with the
    store's key; where they will not open, what is stored)."""
    try:
        state = store.codec.decode_state(header.session_id, header.state, store.clock())
    except StateError:
        return header.user_id, sorted(k for k in header.state if k != META_KEY)
    user_id = state.user_id if META_KEY in state.stored else header.user_id
    return user_id, sorted(state.values)


def _header_facts(store: Store, header: SessionHeader) -> dict[str, Any]:
    user_id, keys = _names(store, header)
    return {
        "id": header.session_id,
        "user": user_id,
        "messages": header.message_count,
        "tokens": header.token_total,
        "keys": keys,
        "created": _when(header.created_at),
        "updated": _when(header.updated_at),
        "expires": _when(header.expires_at),
        "revision": header.revision,
        "children": header.children,
    }


def _headers(store: Store, session_ids: Sequence[str]) -> Iterator[SessionHeader]:
    now = store.clock()
    for session_id in session_ids:
        header = store.backend.read_header(session_id, now)
        if header is not None:
            yield header


def cmd_ls(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    if args.user:
        ids = store.user_sessions(args.user, limit=args.limit or 10**9)
    else:
        ids = list(store.session_ids())
    headers = sorted(_headers(store, ids), key=lambda h: h.updated_at)
    if args.limit:
        headers = headers[-args.limit :]
    if args.json:
        json.dump([_header_facts(store, h) for h in headers], out, indent=2)
        out.write("\n")
        return 0
    for h in headers:
        out.write(
            f"{h.session_id}  user={_names(store, h)[0] or '-'}  messages={h.message_count}  "
            f"updated={_when(h.updated_at)}  expires={_when(h.expires_at)}\n"
        )
    if not headers:
        out.write("no sessions\n")
    return 0


def cmd_show(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    session = store.load(args.session_id)
    header = store.backend.read_header(session.id, store.clock())
    assert header is not None
    summary = session.summary_message()
    facts = {
        **_header_facts(store, header),
        "state": dict(session),
        "user_state": dict(session.user) if session.user_id else {},
        "summary": summary["content"] if summary else None,
        "last_messages": list(session.messages[-args.last :]) if args.last else [],
    }
    if args.json:
        json.dump(facts, out, indent=2, default=repr)
        out.write("\n")
        return 0
    for key in ("id", "user", "messages", "tokens", "created", "updated", "expires", "revision"):
        out.write(f"{key:10} {facts[key]}\n")
    out.write(f"{'state':10} {json.dumps(facts['state'], default=repr)}\n")
    out.write(f"{'user state':10} {json.dumps(facts['user_state'], default=repr)}\n")
    if summary:
        out.write(f"{'summary':10} {summary['content']}\n")
    for message in facts["last_messages"]:
        content = message.get("content")
        text = content if isinstance(content, str) else json.dumps(content, default=repr)
        out.write(f"  {message.get('role')}: {text}\n")
    return 0


def _all_messages(store: Store, session_id: str) -> Iterator[dict[str, Any]]:
    session = store.load(session_id)
    progress = ProgressBar("exporting", len(session.messages))
    try:
        for start in range(0, len(session.messages), EXPORT_PAGE):
            page = session.messages[start : start + EXPORT_PAGE]
            yield from page
            progress.advance(len(page))
    finally:
        progress.close()


def cmd_export(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    session = store.load(args.session_id)
    target = open(args.output, "w", encoding="utf-8") if args.output else out  # noqa: SIM115
    try:
        if args.format == "json":
            head = {
                "id": session.id,
                "user": session.user_id,
                "state": dict(session),
                "user_state": dict(session.user) if session.user_id else {},
            }
            # everything but the messages, then the messages streamed into the same object
            target.write(json.dumps(head, default=repr)[:-1] + ', "messages": [')
            for n, message in enumerate(_all_messages(store, session.id)):  # page by page
                target.write(("," if n else "") + "\n  " + json.dumps(message, default=repr))
            target.write("\n]}\n")
        else:
            json.dump(session.get_history(format=args.format), target, indent=2, default=repr)
            target.write("\n")
    finally:
        if target is not out:
            target.close()
    return 0


def cmd_rm(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    if not store.delete(args.session_id):
        raise StateError(f"no session {args.session_id!r}")
    out.write(f"deleted {args.session_id}\n")
    return 0


def cmd_forget_user(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    removed = store.forget_user(args.user)
    out.write(f"forgot user {args.user!r}: {removed} session(s) and their shared state\n")
    return 0


def cmd_purge(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    progress = ProgressBar("purging", None)

    def looked_at(done: int, total: int) -> None:
        progress.total = total
        progress.advance(done - progress.done)

    removed = store.purge(progress=looked_at)
    progress.close()
    out.write(f"purged {removed} expired session(s)\n")
    return 0


def cmd_stats(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    ids = list(store.session_ids())
    progress = ProgressBar("reading", len(ids))
    now = store.clock()
    stats = {"sessions": 0, "expired": 0, "users": 0, "messages": 0, "tokens": 0}
    users: set[str] = set()
    for session_id in ids:
        header = store.backend.read_header(session_id, now)
        progress.advance()
        if header is None:  # expired (or removed meanwhile): purge sweeps what is left
            stats["expired"] += 1
            continue
        stats["sessions"] += 1
        stats["messages"] += header.message_count
        stats["tokens"] += header.token_total
        if header.user_id:
            users.add(header.user_id)
    progress.close()
    stats["users"] = len(users)
    if args.json:
        json.dump(stats, out, indent=2)
        out.write("\n")
    else:
        for key, value in stats.items():
            out.write(f"{key:10} {value:,}\n")
    return 0


def _keys(text: str | None) -> list[str] | None:
    """Comma-separated keys (the first seals, all open), None for none."""
    keys = [k.strip() for k in (text or "").split(",") if k.strip()]
    return keys or None


def cmd_copy(args: argparse.Namespace, out: TextIO) -> int:
    """Copy sessions between two stores; exit 1 when some were left alone or did not verify.

    Keys: --from-key, else STATEMW_FROM_ENCRYPTION_KEY, else --encryption-key /
    STATEMW_ENCRYPTION_KEY. --to-key, else STATEMW_TO_ENCRYPTION_KEY, else the source's keys
    (a copy stays encrypted unless --to-plain says otherwise).
    """
    env = os.environ.get
    from_keys = _keys(
        args.from_key
        or env("STATEMW_FROM_ENCRYPTION_KEY")
        or args.encryption_key
        or env("STATEMW_ENCRYPTION_KEY")
    )
    to_keys = _keys(args.to_key or env("STATEMW_TO_ENCRYPTION_KEY"))
    if args.to_plain:
        if to_keys:
            raise StateError("--to-plain and a target key contradict each other")
    elif to_keys is None:
        to_keys = from_keys
    source = open_store(args.source, from_keys, wait=args.wait)
    target = open_store(args.target, to_keys, wait=args.wait, create=True)
    progress = ProgressBar("copying", None)

    def advanced(done: int, total: int) -> None:
        progress.total = total
        progress.advance(done - progress.done)

    try:
        report = copy_sessions(
            source, target, user_id=args.user, session_id=args.session, progress=advanced
        )
    finally:
        progress.close()
        source.close()
        target.close()
    out.write(
        f"copied {report.sessions} session(s) and {report.messages:,} message(s), "
        f"shared state of {report.users} user(s); {report.skipped} already there\n"
    )
    for sid in report.conflicts:
        out.write(f"left alone: {sid} (the target holds another history of it)\n")
    for sid in report.mismatches:
        out.write(f"did not verify: {sid} (counts differ after the copy)\n")
    if report.ok:
        out.write("verified: message, token and key counts match\n")
    return 0 if report.ok else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="statemw", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", help="store URL (default: STATEMW_URL or the default directory)")
    p.add_argument(
        "--encryption-key",
        help="key(s) of an encrypted store, comma-separated (default: STATEMW_ENCRYPTION_KEY)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=WAIT,
        metavar="SECONDS",
        help=f"how long to wait for a store another process holds locked (default {WAIT:g})",
    )
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("ls", help="list sessions")
    ls.add_argument("--user", help="only this user's sessions")
    ls.add_argument("--limit", type=int, default=0, help="at most this many (the newest)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(run=cmd_ls)
    show = sub.add_parser("show", help="one session: facts, state, last messages")
    show.add_argument("session_id")
    show.add_argument("--last", type=int, default=20, help="messages to show (default 20)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=cmd_show)
    export = sub.add_parser("export", help="a whole conversation as JSON")
    export.add_argument("session_id")
    export.add_argument("--format", choices=["json", "openai", "anthropic"], default="json")
    export.add_argument("--output", help="write to this file instead of stdout")
    export.set_defaults(run=cmd_export)
    rm = sub.add_parser("rm", help="delete a session (and its sub-sessions)")
    rm.add_argument("session_id")
    rm.set_defaults(run=cmd_rm)
    forget = sub.add_parser("forget-user", help="delete every session and the state of a user")
    forget.add_argument("user")
    forget.set_defaults(run=cmd_forget_user)
    sub.add_parser("purge", help="remove expired sessions and keys").set_defaults(run=cmd_purge)
    stats = sub.add_parser("stats", help="counts of sessions, users, messages, tokens")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(run=cmd_stats)
    copy = sub.add_parser("copy", help="copy sessions to another store (resumable, verified)")
    copy.add_argument("--from", dest="source", required=True, metavar="URL")
    copy.add_argument("--to", dest="target", required=True, metavar="URL")
    which = copy.add_mutually_exclusive_group()
    which.add_argument("--user", help="only this user's sessions (and shared state)")
    which.add_argument("--session", help="only this session (with its sub-sessions)")
    copy.add_argument("--from-key", help="source key(s), comma-separated")
    copy.add_argument("--to-key", help="target key(s), comma-separated (default: the source's)")
    copy.add_argument("--to-plain", action="store_true", help="write the target unencrypted")
    copy.set_defaults(run=None)
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = parser().parse_args(argv)
    # an error is one line, ours: an app's outage log (statemw._report) is not for the command
    logger = logging.getLogger("statemw")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    keys = args.encryption_key or os.environ.get("STATEMW_ENCRYPTION_KEY")
    try:
        if args.run is None:  # copy: two stores of its own
            return cmd_copy(args, out or sys.stdout)
        store = open_store(
            args.store or os.environ.get("STATEMW_URL") or default_url(),
            keys.split(",") if keys else None,
            wait=args.wait,
        )
        try:
            code: int = args.run(store, args, out or sys.stdout)
            return code
        finally:
            store.close()
    except StateError as exc:
        sys.stderr.write(f"statemw: error: {exc}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
