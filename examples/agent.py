"""A small deterministic assistant that shows statefulness: it remembers across turns.

No LLM needed: rules fill the seed's travel slots (destination, date, time of day, budget), keep
a support case's complaint and order number, and store facts about the user (home, name) in
user-scoped state that every session of that user shares. Facts go stale: where the user lives is
asked about again after HOME_CHECK ("Are you still in San Francisco?"), and corrections in words
("actually make it Munich", "not Berlin, Paris", "change the date to Friday") update the slot
they name. With OPENAI_BASE_URL set, replies come from any OpenAI-compatible endpoint instead,
given the session's history.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from collections.abc import Generator
from typing import Any

from statemw import Session, StaleKey
from statemw.state import TrackedState

MONTHS = [
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
]  # fmt: skip
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
TIMES = ("morning", "afternoon", "evening", "night")


# -- places: "Berlin", "berlin", "San Francisco", "new york" -----------------------------------

PLACE = r"([A-Za-z][A-Za-z]+(?:\s[A-Za-z][A-Za-z]+)?)"
"""One or two words that may name a place, in any case: `_place` decides whether they do."""
NOT_PLACES = frozenset([
    "a", "an", "the", "my", "your", "our", "his", "her", "their", "this", "that", "these",
    "those", "it", "me", "us", "you", "him", "them", "i", "we",
    "to", "in", "for", "from", "at", "on", "by", "with", "of", "and", "or", "but", "then", "than",
    "so", "too", "also", "again", "now", "soon", "later", "here", "there",
    "please", "thanks", "thank", "ok", "okay", "yes", "no", "not", "maybe", "sure", "still",
    "just", "only", "very", "really", "all",
    "today", "tomorrow", "tonight", "week", "weekend", "month", "next", "last",
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "couple",
    "few", "some", "any", "more", "less",
    "flight", "flights", "hotel", "hotels", "trip", "trips", "ticket", "tickets", "plane",
    "train", "car", "budget", "price", "money",
    "cheaper", "earlier", "sooner", "longer", "shorter", "bigger", "smaller", "better",
    "different", "same", "other", "something", "anything", "nothing", "somewhere", "anywhere",
    "nowhere", "home", "work", "hurry", "rush", "bit", "while", "moment",
    "be", "go", "get", "book", "travel", "fly", "stay", "leave", "change", "make", "set",
    *MONTHS, *DAYS, *TIMES,
])  # fmt: skip
"""Words after "to", "in" or "make it" that are not a place, so lowercase place names can be
taken ("find flights to berlin") without "flights for two" or "make it cheaper" becoming one."""


def _place(words: str) -> str | None:
    """`words` (a PLACE match) as a place name, capitalized; a second word that is not part of
    a place is dropped ("berlin please" is Berlin); None when the first word is not a place."""
    kept: list[str] = []
    for word in words.split():
        if word.lower() in NOT_PLACES:
            break
        kept.append(word if not word.islower() else word.capitalize())
    return " ".join(kept) or None


def _destination(text: str) -> str | None:
    """Where a trip goes: a place after "to" or "in" (in any case), or a capitalized one after
    "for" ("flights for Berlin", but "flights for two" is not a place)."""
    for match in re.finditer(r"\b(to|in|for)\s+(?=" + PLACE + ")", text, re.I):  # overlapping
        if match.group(1).lower() == "for" and not match.group(2)[0].isupper():
            continue
        place = _place(match.group(2))
        if place is not None:
            return place
    return None


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


HOME = re.compile(r"\bI (?:live in|moved to|now live in) " + PLACE, re.I)
NAME = re.compile(r"\bmy name is ([A-Z][a-zA-Z]+)", re.I)
TRIP = ("destination", "date", "time_of_day", "budget")

DAY = 86400.0
HOME_CHECK = 14 * DAY
"""Where someone lives may change: after two weeks the assistant asks again."""
CONFIRM_AFTER = {"home": HOME_CHECK}
ASKING = "_asking"
"""Session key (hidden from the page) naming the stale fact the last answer asked about."""


def remember(state: TrackedState, key: str, value: Any) -> None:
    """Store a fact with its policy: a key in CONFIRM_AFTER is asked about again after that."""
    state.set(key, value, confirm_after=CONFIRM_AFTER.get(key))


def _remember_user_facts(session: Session, text: str) -> list[str]:
    """User-scoped facts: shared by all of this user's conversations."""
    learned = []
    found = HOME.search(text)
    home = _place(found.group(1)) if found else None
    name = NAME.search(text)
    target = _user_scope(session)
    if home:
        remember(target, "home", home)
        learned.append(f"you live in {home}")
    if name:
        remember(target, "name", name.group(1).capitalize())
        learned.append(f"your name is {name.group(1).capitalize()}")
    return learned


def _user_scope(session: Session) -> TrackedState:
    """Where facts about the user go: the user's state when logged in, else the session."""
    return session.user if session.user_id is not None else session


# -- stale facts: ask again, take the answer ------------------------------------------------------


def _question(key: str, value: Any) -> str:
    if key == "home":
        return f"Are you still in {value}?"
    if key == "name":
        return f"Is your name still {value}?"
    return f"Is your {key.replace('_', ' ')} still {value}?"


def _stale_question(session: Session) -> str | None:
    """Ask about the first stale fact (and remember what was asked), or None."""
    for stale in session.stale_keys():
        scope = _owner_of(session, stale)
        if scope is not None and stale in scope:
            session[ASKING] = [stale.scope, str(stale)]
            return _question(stale, scope[stale])
    return None


def _owner_of(session: Session, stale: StaleKey) -> TrackedState | None:
    if stale.scope == "user":
        return session.user
    return session if stale.scope == "session" else session.parent


YES = re.compile(r"^\s*(yes|yep|yeah|yup|still|correct|right|sure|i am|of course)\b", re.I)
NO = re.compile(r"^\s*(no|nope|not anymore|not any more)\b[\s,.!]*", re.I)


def _answer_to_question(session: Session, text: str) -> str | None:
    """The user's answer to "Are you still in X?": yes confirms it, a new value replaces it,
    no forgets it. None when the message is about something else (asked again later)."""
    asked = session.pop(ASKING, None)
    if not isinstance(asked, list) or len(asked) != 2:
        return None
    scope = session.user if asked[0] == "user" and session.user_id is not None else session
    key = str(asked[1])
    old = scope.get(key)
    new = None if YES.search(text) else _new_value(key, NO.sub("", text))
    if new is not None and new != old:
        remember(scope, key, new)
        was = f" (was {old})" if old is not None else ""
        return f"Updated: {_described(key, new)}{was}. Thanks!"
    if old is not None and (YES.search(text) or new == old):
        scope.confirm(key)
        return f"Thanks, I'll keep {old} as your {key}."
    if old is not None and NO.search(text):
        del scope[key]
        session[ASKING] = asked  # the next answer may be the new value
        return f"OK, I've forgotten {old}. What is your {key} now?"
    return None


def _new_value(key: str, text: str) -> str | None:
    """A new value for `key` said in `text`, or None."""
    if key == "home":
        said = HOME.search(text) or re.search(
            r"\b(?:moved to|now in|living in|live in|I'm in|I am in)\s+" + PLACE, text, re.I
        )
        if said:
            return _place(said.group(1))
        bare = re.fullmatch(r"\s*(?:now\s+)?" + PLACE + r"(?:\s+now)?[\s.!]*", text)
        return _place(bare.group(1)) if bare else None
    return _slot_value(key, text)


def _described(key: str, value: Any) -> str:
    if key == "home":
        return f"you live in {value}"
    return f"your {key.replace('_', ' ')} is {value}"


# -- corrections in words -------------------------------------------------------------------------

SLOT_WORDS = {
    "destination": "destination",
    "city": "destination",
    "date": "date",
    "day": "date",
    "time": "time_of_day",
    "departure": "time_of_day",
    "budget": "budget",
    "price": "budget",
    "home": "home",
    "name": "name",
}
CHANGE = re.compile(
    r"\b(?:change|set|switch|update|move)\s+(?:the\s+|my\s+)?(" + "|".join(SLOT_WORDS) + r")"
    r"\s+(?:to|for)\s+(.+)",
    re.I,
)
INSTEAD = re.compile(r"\bnot\s+(.+?)\s*(?:,|\bbut\b|;)\s*(?:but\s+)?(.+)", re.I)
MAKE_IT = re.compile(r"\b(?:actually|instead|rather)?,?\s*(?:make|change)\s+it\s+(.+)", re.I)


def _slot_value(slot: str, text: str) -> str | None:
    """`text` read as a value for a trip slot (or None when it does not fit the slot)."""
    text = text.strip().rstrip(".!?")
    if slot == "date":
        return _date(text)
    if slot == "time_of_day":
        return _time_of_day(text)
    if slot == "budget":
        return _budget(text)
    if slot == "name":
        match = re.fullmatch(r"([A-Za-z]+)", text)
        return match.group(1).capitalize() if match else None
    match = re.fullmatch(r"(?:to\s+|in\s+)?" + PLACE, text, re.I)
    return _place(match.group(1)) if match else None


def _slot_for(text: str) -> tuple[str, str] | None:
    """Which trip slot a bare value fits, with the value: "Friday" is a date, "Munich" a place."""
    for slot in ("date", "time_of_day", "budget", "destination"):
        value = _slot_value(slot, text)
        if value is not None:
            return slot, value
    return None


def _correction(session: Session, text: str) -> str | None:
    """Take a correction said in words and say what changed, or None when it is not one."""
    user = _user_scope(session)
    change = CHANGE.search(text)
    instead = INSTEAD.search(text)
    make_it = MAKE_IT.search(text)
    slot = value = None
    if change:
        slot = SLOT_WORDS[change.group(1).lower()]
        value = _new_value(slot, change.group(2))
    elif instead:
        old = instead.group(1).strip().lower()
        held = [k for k, v in _facts(session).items() if str(v).lower() == old]
        if held:
            slot = held[0]
            value = _new_value(slot, instead.group(2))
    elif make_it:
        found = _slot_for(make_it.group(1))
        if found is not None:
            slot, value = found
    if slot is None or value is None:
        return None
    target = user if slot in ("home", "name") else session
    old = target.get(slot)
    remember(target, slot, value)
    said = f"Changed {slot.replace('_', ' ')} to {value}" + (f" (was {old})." if old else ".")
    if slot in TRIP:
        said += " " + _trip_status(session)
    return said


def _facts(session: Session) -> dict[str, Any]:
    user = dict(session.user) if session.user_id is not None else {}
    return {k: v for k, v in {**user, **session}.items() if not k.startswith("_")}


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
    session.update(updates)  # each slot its own key: the user can correct one at a time
    return _trip_status(session)


def _trip_status(session: Session) -> str:
    """The next question about the trip, or the booking when every slot is filled."""
    trip = {k: str(session[k]) for k in TRIP if session.get(k)}
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
    """The deterministic assistant's answer; it reads and writes the session's state. A stale
    fact is asked about at the end of the answer, and the next message may answer it."""
    answer = _answer_to_question(session, text) or _correction(session, text)
    if answer is None:
        answer = _reply(session, text)
        question = _stale_question(session)
        if question:
            answer += " By the way: " + question
    return answer


def _reply(session: Session, text: str) -> str:
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
