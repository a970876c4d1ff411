"""Context windows: what part of a conversation goes to the model.

Placeholder until the context-strategies work lands: the summary (if any) then every message
after it, as OpenAI-style dicts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from statemw.messages import Message

if TYPE_CHECKING:
    from statemw.session import Session


def history(session: Session, *, last: int | None = None, **_: Any) -> list[Message]:
    summary = session.summary
    start = 0 if summary is None else summary.upto
    records = session.messages.records(start, len(session.messages))
    if last is not None:
        records = records[-last:] if last > 0 else []
    head = [] if summary is None else [session.summary_message()]
    return [m for m in head if m is not None] + [dict(r.message) for r in records]
