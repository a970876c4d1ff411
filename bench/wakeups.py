"""How often a turn's process sleeps while Redis answers, and what the machine charges to wake it
(issue 9).

A request that waits for Redis lets its process block: the event loop in its selector, a
blocking client in `recv`. On a VM whose guest kernel halts an idle vCPU at once (the cpuidle
`haltpoll` driver with `guest_halt_poll_ns=0`, as on the 2-core machines this project is
measured on), waking from that block costs tens of µs on top of the round trip. A client that is
still busy with its own work when the reply lands never blocks, and does not pay it.

This runs bench/web.py's products and L=0 turn cells (the same apps, handlers and checks) in one
process and prints per turn: the median µs, the CPU time (getrusage), the voluntary context
switches (times the process blocked), and for the asyncio products the selector calls that were
allowed to block and the time spent in them. It also prints the machine's halt-poll setting.

    /tmp/webbench/bin/python bench/wakeups.py
    /tmp/webbench/bin/python bench/wakeups.py \\
        statemw-starlette-redis starsessions-redis --turns 5000

To see what the setting costs, change it by hand (root; the kernel's own default is 200000 ns),
run again, and set it back:

    echo 200000 > /sys/module/haltpoll/parameters/guest_halt_poll_ns
    /tmp/webbench/bin/python bench/wakeups.py
    echo 0 > /sys/module/haltpoll/parameters/guest_halt_poll_ns
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import web  # bench/ is not a package: its modules import each other by path

DEFAULT = (
    "statemw-starlette-redis",
    "starsessions-redis",
    "statemw-flask-redis",
    "flask-session-redis",
)

HALT_POLL = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
CPUIDLE = Path("/sys/devices/system/cpu/cpuidle/current_driver")


@dataclass
class Turns:
    """One product's L=0 turns, per turn."""

    median_us: float
    cpu_us: float
    blocked: float  # voluntary context switches
    waits: float  # selector calls allowed to block
    wait_us: float  # time in those calls


class SelectorWatch:
    """Counts the event loop's selector calls that may block, and the time they take.

    asyncio's selector event loops keep their selector in `_selector`; the loop asks it to
    block (timeout None or > 0) only when no callback is ready."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.selector: Any = getattr(loop, "_selector")  # noqa: B009 (private to asyncio)
        self.select = self.selector.select
        self.waits = 0
        self.ns = 0

    def __enter__(self) -> SelectorWatch:
        select = self.select

        def watched(timeout: float | None = None) -> Any:
            if timeout == 0:
                return select(timeout)
            start = time.perf_counter_ns()
            try:
                return select(timeout)
            finally:
                self.waits += 1
                self.ns += time.perf_counter_ns() - start

        self.selector.select = watched
        return self

    def __exit__(self, *exc: object) -> None:
        del self.selector.select  # the instance attribute: the class's method again


async def turns(product: str, count: int) -> Turns:
    async with web.started_cell(product, "turn", 0, warm=200) as cell:
        with SelectorWatch(asyncio.get_running_loop()) as watch:
            before = resource.getrusage(resource.RUSAGE_SELF)
            times = [await cell.one() for _ in range(count)]
            after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Turns(
        median_us=statistics.median(times) / 1000,
        cpu_us=cpu / count * 1e6,
        blocked=(after.ru_nvcsw - before.ru_nvcsw) / count,
        waits=watch.waits / count,
        wait_us=watch.ns / count / 1000,
    )


def setting() -> str:
    driver = CPUIDLE.read_text().strip() if CPUIDLE.exists() else "unknown"
    poll = HALT_POLL.read_text().strip() if HALT_POLL.exists() else "n/a"
    return f"cpuidle driver: {driver}; guest_halt_poll_ns: {poll}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("products", nargs="*", default=list(DEFAULT), help="bench/web.py names")
    parser.add_argument("--turns", type=int, default=3000, help="timed turns per product")
    args = parser.parse_args()
    web.check_products(parser, args.products)
    print(setting())
    print(
        f"{'L=0 turn':28} {'median µs':>10} {'CPU µs':>8} {'blocked':>8} "
        f"{'waits':>6} {'in waits µs':>12}"
    )
    try:
        for product in args.products:
            t = asyncio.run(turns(product, args.turns))
            print(
                f"{product:28} {t.median_us:10.1f} {t.cpu_us:8.1f} {t.blocked:8.2f} "
                f"{t.waits:6.2f} {t.wait_us:12.1f}"
            )
    finally:
        web.redis_cleanup_after(args.products)


if __name__ == "__main__":
    main()
