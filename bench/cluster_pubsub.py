"""Cluster bus messages per save: classic PUBLISH against sharded SPUBLISH.

Starts a Redis Cluster of --masters masters with --replicas replicas each, saves --saves times
(one message each, sessions spread over every shard) with the cluster scripts statemw uses
(SPUBLISH), then again with the single-server scripts (PUBLISH), and prints the cluster bus
messages that carried the changes (`cluster_stats_messages_publish_sent` plus
`..._publishshard_sent` from CLUSTER INFO, summed over every node) per save.

    .venv/bin/python bench/cluster_pubsub.py [--masters 3] [--replicas 1] [--saves 300]
"""

from __future__ import annotations

import argparse

import redis
from local_cluster import LocalCluster

from statemw import Store
from statemw.backends.redis.client import RedisBackend
from statemw.backends.redis.lua import CLUSTER_SCRIPTS, SCRIPTS


def bus_publishes(ports: list[int]) -> int:
    total = 0
    for port in ports:
        client = redis.Redis(port=port)
        text = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
        client.close()
        for line in text.decode().splitlines():
            name, _, value = line.partition(":")
            if name in (
                "cluster_stats_messages_publish_sent",
                "cluster_stats_messages_publishshard_sent",
            ):
                total += int(value)
    return total


def per_save(store: Store, ports: list[int], sources: dict[str, str], saves: int) -> float:
    backend = store.backend
    assert isinstance(backend, RedisBackend)
    backend._scripts = {n: backend.client.register_script(s) for n, s in sources.items()}
    sessions = [store.create() for _ in range(30)]
    for s in sessions:
        s.save()
    before = bus_publishes(ports)
    for i in range(saves):
        session = sessions[i % len(sessions)]
        session.add_message("user", f"m{i}")
        session.save()
    return (bus_publishes(ports) - before) / saves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--masters", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--saves", type=int, default=300)
    args = parser.parse_args()
    with LocalCluster(masters=args.masters, replicas=args.replicas) as cluster:
        ports = [n.port for n in cluster.nodes]
        store = Store(cluster.url)
        sharded = per_save(store, ports, CLUSTER_SCRIPTS, args.saves)
        classic = per_save(store, ports, SCRIPTS, args.saves)
        store.close()
    nodes = args.masters * (1 + args.replicas)
    print(f"{args.masters} masters x {args.replicas} replicas ({nodes} nodes), {args.saves} saves")
    print(f"bus messages per save: PUBLISH {classic:.2f}, SPUBLISH (statemw) {sharded:.2f}")


if __name__ == "__main__":
    main()
