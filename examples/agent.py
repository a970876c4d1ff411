"""A small deterministic assistant that shows statefulness: it remembers across turns.

No LLM needed: rules fill the seed's travel slots (destination, date, time of day, budget), keep
a support case's complaint and order number, and store facts about the user (home, name) in
user-scoped state that every session of that user shares. With OPENAI_BASE_URL set, replies come
from any OpenAI-compatible endpoint instead, given the session's history.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from collections.abc import Generator
from typing import Any

from statemw import Session

MONTHS = [
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
]  # fmt: skip
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
TIMES = ("morning", "afternoon", "evening", "night")


def _destination(text: str) -> str | None:
    match = re.search(r"\b(?:to|in|for)\s+([A-Z][a-zA-Z]+(?:\s[A-Z][a-zA-Z]+)?)", text)
    return match.group(1) if match else None


def _date(text: str) -> str | None:
    lowered = text.lower()
    match = re.search(r"\b(next|this)\s+(" + "|".join(DAYS) + r")\b", lowered)
    if match:
        return f"{match.group(1).capitalize()} {match.group(2).capitalize()}"
    for word in ("today", "tomorrow", *DAYS, *MONTHS):
        if re.search(rf"\b{word}\b", lowered):
            return word.capitalize()
    return None


def _time_of_day(text: str) -> str | None:
    lowered = text.lower()
    # "$150/night" and "per night" are prices, not departure times
    return next((t for t in TIMES if re.search(rf"(?<!/)(?<!per )\b{t}\b", lowered)), None)


def _budget(text: str) -> str | None:
    match = re.search(r"(?:under|below|max|budget)?\s*\$\s?(\d+)(?:\s*/\s*night)?", text, re.I)
    if match:
        return f"under ${match.group(1)}"
    match = re.search(r"\b(?:under|below)\s+(\d+)\b", text, re.I)
    return f"under ${match.group(1)}" if match else None


HOME = re.compile(r"\bI live in ([A-Z][a-zA-Z]+(?:\s[A-Z][a-zA-Z]+)?)")
NAME = re.compile(r"\bmy name is ([A-Z][a-zA-Z]+)", re.I)
TRIP = ("destination", "date", "time_of_day", "budget")


def _remember_user_facts(session: Session, text: str) -> list[str]:
    """User-scoped facts: shared by all of this user's conversations."""
    learned = []
    home = HOME.search(text)
    name = NAME.search(text)
    target = session.user if session.user_id is not None else session
    if home:
        target["home"] = home.group(1)
        learned.append(f"you live in {home.group(1)}")
    if name:
        target["name"] = name.group(1).capitalize()
        learned.append(f"your name is {name.group(1).capitalize()}")
    return learned


def _facts(session: Session) -> dict[str, Any]:
    user = dict(session.user) if session.user_id is not None else {}
    return {**user, **session}


def _recall(session: Session) -> str:
    facts = _facts(session)
    if not facts:
        return "I don't remember anything about you yet."
    parts = []
    trip = {k: facts[k] for k in TRIP if facts.get(k)}
    if trip:
        parts.append(
            "your trip: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in trip.items())
        )
    if facts.get("order"):
        parts.append(f"order {facts['order']} ({facts.get('issue', 'no issue yet')})")
    for key in ("name", "home"):
        if facts.get(key):
            parts.append(f"your {key}: {facts[key]}")
    return "I remember " + "; ".join(parts) + "." if parts else "I remember a few things."


def _support(session: Session, text: str) -> str | None:
    order = re.search(r"\bORDER-\d+\b", text, re.I)
    complaint = re.search(
        r"(hasn't arrived|has not arrived|didn't arrive|is late|is broken|is damaged)", text, re.I
    )
    if complaint and not session.get("issue"):
        session["issue"] = f"it {complaint.group(1).lower()}"
    if order:
        session["order"] = order.group(0).upper()
        if session.get("issue"):
            return (
                f"I see {session['order']} was shipped 3 days ago, and you said "
                f"{session['issue']}. Let me check tracking..."
            )
        return f"Found {session['order']}. What's the issue?"
    if complaint:
        return "Sorry about that. What's your order number?"
    return None


def _travel(session: Session, text: str) -> str | None:
    trip = {k: str(session[k]) for k in TRIP if session.get(k)}
    found = {
        "destination": _destination(text),
        "date": _date(text),
        "time_of_day": _time_of_day(text),
        "budget": _budget(text),
    }
    starting = found["destination"] is not None or re.search(r"\b(flight|hotel|trip)", text, re.I)
    updates = {k: v for k, v in found.items() if v}
    if not trip and not starting:
        return None
    if not updates and not starting:
        return None
    trip.update(updates)
    session.update(updates)  # each slot its own key: the user can correct one at a time
    if "destination" not in trip:
        return "Where would you like to go?"
    home = _facts(session).get("home")
    if "date" not in trip:
        origin = f" Round trip from {home}?" if home else ""
        return f"{trip['destination']}, noted. When would you like to travel?{origin}"
    if "time_of_day" not in trip:
        return f"{trip['date']} works. Morning or evening?"
    if "budget" not in trip:
        return f"A {trip['time_of_day']} departure. What's your budget?"
    origin = f" from {home}" if home else ""
    return (
        f"Booking{origin} to {trip['destination']}: {trip['date']}, {trip['time_of_day']}, "
        f"{trip['budget']}. Anything else?"
    )


def rule_reply(session: Session, text: str) -> str:
    """The deterministic assistant's answer; it reads and writes the session's state."""
    if re.search(r"what do you (remember|know)", text, re.I):
        return _recall(session)
    learned = _remember_user_facts(session, text)
    rest = NAME.sub("", HOME.sub("", text))  # "I live in X" is not a trip to X
    answer = _support(session, rest) or _travel(session, rest)
    if answer:
        return answer
    if learned:
        return "Got it: " + " and ".join(learned) + ". I'll remember that."
    if re.search(r"^\s*(hi|hello|hey)\b", text, re.I):
        name = _facts(session).get("name")
        return f"Hello{', ' + name if name else ''}! Try: Find flights to Berlin."
    return "I can plan a trip (try: Find flights to Berlin) or help with an order."


def llm_reply(session: Session, base_url: str) -> str:  # pragma: no cover - needs a server
    """Ask an OpenAI-compatible endpoint, sending the session's context window."""
    body = json.dumps(
        {
            "model": os.environ.get("OPENAI_MODEL", "gpt-4o-mini"),
            "messages": session.get_history(max_tokens=3000),
        }
    ).encode()
    request = urllib.request.Request(
        base_url.rstrip("/") + "/chat/completions",
        data=body,
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {os.environ.get('OPENAI_API_KEY', '')}",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        data = json.load(response)
    return str(data["choices"][0]["message"]["content"])


def begin_turn(session: Session, text: str) -> str:
    """Log the user's message and decide the answer (not logged yet: it may be streamed)."""
    session.add_message("user", text)
    base_url = os.environ.get("OPENAI_BASE_URL")
    answer = rule_reply(session, text)
    if base_url:  # pragma: no cover - needs a server
        try:
            answer = llm_reply(session, base_url)
        except OSError as exc:
            answer += f" (LLM unavailable: {exc})"
    return answer


def respond(session: Session, text: str) -> str:
    """One whole turn: log the user's message, answer, log the answer."""
    answer = begin_turn(session, text)
    session.add_message("assistant", answer)
    return answer


def stream_answer(session: Session, answer: str) -> Generator[str, None, None]:
    """The answer a word at a time, as a model streams it; logged when the stream ends, as
    much of it as was sent (a client that leaves early saw only that)."""
    sent = ""
    try:
        for piece in re.findall(r"\S+\s*", answer):
            sent += piece
            yield piece
    finally:
        session.add_message("assistant", sent)
