"""How many of the newest messages a load reads up front: as many as recent requests read.

A load that reads 100 messages for a request that sends the model the last 20 moves five times
the bytes it needs, on every request, through Redis or PostgreSQL and the client's parser. So a
store remembers how far back into the stored log its requests read (`saw`), and its loads read
that far (`size`), never more than the store's `window`:

- a request that reads further than the load did pays one more read, and the loads after it
  read that far at once;
- reading less waits until a whole EPOCH of loads went by without a request reading as far, so
  an app that reads deep now and then keeps its window.

Per process and lock-free: a lost update between threads only costs one request a read.
"""

from __future__ import annotations

EPOCH = 256
"""Loads over which the deepest read is kept before the window may shrink to it."""

FLOOR = 16
"""Messages a load reads up front at least (up to the store's window): a few cost next to
nothing, and an app that starts reading history pays no extra read for the first of them."""


class Readahead:
    """The adaptive size of a load's window, up to `cap` (the store's `window`)."""

    __slots__ = ("_deepest", "_loads", "_size", "cap")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._size = cap  # until requests show what they read, read what the store allows
        self._deepest = 0  # the deepest read in this epoch
        self._loads = 0

    def size(self) -> int:
        """Messages the next load reads up front."""
        self._loads += 1
        if self._loads >= EPOCH:
            self._size = min(self.cap, max(FLOOR, self._deepest))
            self._deepest = self._loads = 0
        return self._size

    def saw(self, reach: int) -> None:
        """A request read the newest `reach` stored messages (or some of them, that far back)."""
        if reach > self._deepest:
            self._deepest = reach
            if reach > self._size:
                self._size = min(self.cap, reach)
