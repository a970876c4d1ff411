"""State layout on PostgreSQL, measured: a row per key, or every key in one column of the session.

Both layouts merge on the server (concurrent saves of different keys must both survive), so the
compact one keeps parallel arrays (keys, values) on the session row and rebuilds them in SQL.
For a session of K keys of S bytes each, per layout: the median time to read the state, to save
one changed key, and to save nothing but a header change (what every append does), with the WAL
bytes each save writes (what replication, backups and the disk pay).

    .venv/bin/python bench/postgres_state_layout.py [--url postgresql://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

SCHEMA = """
CREATE TABLE {s}.h_rows (sid text PRIMARY KEY, revision bigint NOT NULL);
CREATE TABLE {s}.k_rows (sid text, key text, value bytea NOT NULL, PRIMARY KEY (sid, key));
CREATE TABLE {s}.h_compact (sid text PRIMARY KEY, revision bigint NOT NULL,
                            keys text[] NOT NULL, vals bytea[] NOT NULL);
"""

READ_ROWS = """
SELECT h.revision, st.keys, st.vals FROM {s}.h_rows h LEFT JOIN LATERAL (
    SELECT array_agg(k.key) AS keys, array_agg(k.value) AS vals FROM {s}.k_rows k
    WHERE k.sid = h.sid) st ON true WHERE h.sid = %(sid)s
"""
SAVE_ROWS = """
WITH up AS (INSERT INTO {s}.k_rows VALUES (%(sid)s, %(key)s, %(value)s)
            ON CONFLICT (sid, key) DO UPDATE SET value = excluded.value)
UPDATE {s}.h_rows SET revision = revision + 1 WHERE sid = %(sid)s
"""
READ_COMPACT = "SELECT revision, keys, vals FROM {s}.h_compact WHERE sid = %(sid)s"
SAVE_COMPACT = """
UPDATE {s}.h_compact h SET revision = revision + 1,
    keys = ARRAY(SELECT u.k FROM unnest(h.keys, h.vals) u(k, v) WHERE u.k <> %(key)s)
           || %(key)s::text,
    vals = ARRAY(SELECT u.v FROM unnest(h.keys, h.vals) u(k, v) WHERE u.k <> %(key)s)
           || %(value)s::bytea
WHERE sid = %(sid)s
"""
HEADER_ONLY_ROWS = "UPDATE {s}.h_rows SET revision = revision + 1 WHERE sid = %(sid)s"
HEADER_ONLY_COMPACT = "UPDATE {s}.h_compact SET revision = revision + 1 WHERE sid = %(sid)s"


def median_ms(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def wal_per_call(conn: psycopg.Connection[Any], fn: Callable[[], object], n: int) -> float:
    lsn = "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"
    before = conn.execute(lsn).fetchone()
    for _ in range(n):
        fn()
    after = conn.execute(lsn).fetchone()
    assert before is not None
    assert after is not None
    return float(after[0] - before[0]) / n


def measure(
    conn: psycopg.Connection[Any], statements: list[bytes], params: dict[str, Any], n: int
) -> tuple[float, float, float, float, float]:
    """Read, save-one-key and header-only medians, with the WAL bytes of each save."""
    read, save, header = statements
    return (
        median_ms(lambda: conn.execute(read, params, binary=True).fetchall(), n),
        median_ms(lambda: conn.execute(save, params), n),
        wal_per_call(conn, lambda: conn.execute(save, params), n),
        median_ms(lambda: conn.execute(header, params), n),
        wal_per_call(conn, lambda: conn.execute(header, params), n),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()
    schema = f"bench_state_{uuid.uuid4().hex[:8]}"
    s = f'"{schema}"'
    print(
        f"{'keys x bytes':>14} {'layout':>8} {'read ms':>8} {'set 1 key ms':>12} "
        f"{'WAL B':>7} {'header-only ms':>14} {'WAL B':>7}"
    )
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {s}".encode())
        try:
            conn.execute(SCHEMA.format(s=s).encode())
            for keys, size in ((10, 100), (20, 10_000)):
                for layout in ("rows", "compact"):
                    sid = uuid.uuid4().hex
                    values = [os.urandom(size) for _ in range(keys)]  # encrypted: no compression
                    names = [f"key{i}" for i in range(keys)]
                    if layout == "rows":
                        conn.execute(f"INSERT INTO {s}.h_rows VALUES (%s, 0)".encode(), (sid,))
                        for name, value in zip(names, values, strict=True):
                            conn.execute(
                                f"INSERT INTO {s}.k_rows VALUES (%s, %s, %s)".encode(),
                                (sid, name, value),
                            )
                        read, save, header = READ_ROWS, SAVE_ROWS, HEADER_ONLY_ROWS
                    else:
                        conn.execute(
                            f"INSERT INTO {s}.h_compact VALUES (%s, 0, %s, %s)".encode(),
                            (sid, names, values),
                        )
                        read, save, header = READ_COMPACT, SAVE_COMPACT, HEADER_ONLY_COMPACT
                    params = {"sid": sid, "key": "key3", "value": os.urandom(100)}
                    read_ms, save_ms, save_wal, head_ms, head_wal = measure(
                        conn, [q.format(s=s).encode() for q in (read, save, header)], params, args.n
                    )
                    print(
                        f"{f'{keys} x {size}':>14} {layout:>8} {read_ms:>8.3f} {save_ms:>12.3f} "
                        f"{save_wal:>7.0f} {head_ms:>14.3f} {head_wal:>7.0f}"
                    )
        finally:
            conn.execute(f"DROP SCHEMA {s} CASCADE".encode())


if __name__ == "__main__":
    main()
