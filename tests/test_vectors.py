"""Semantic memory: vectors stored small, read once, embedded once, scored alike with or
without numpy, and selection bringing in a selected message's turn."""

from __future__ import annotations

import math
import zlib
from array import array
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statemw import Session, Store, batched, generate_key, sketch
from statemw._semantic import SessionVectors
from statemw.codec import Codec, pack
from statemw.errors import CorruptRecord
from statemw.records import Delta
from statemw.vectors import VectorIndex, pack_vector, text_check, unpack_vector
from tests.support import check_budget, check_rules, conversations, store_url, stored_session

floats32 = st.floats(-(2.0**60), 2.0**60, width=32, allow_subnormal=False)
vectors = st.lists(floats32, min_size=1, max_size=64)
small = st.floats(-10, 10, width=32, allow_subnormal=False)


def unit(vector: list[float]) -> list[float]:
    """The vector scaled to length 1."""
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector


@given(vectors, st.integers(0, 2**32 - 1))
def test_a_packed_vector_reads_back_as_its_unit_vector_in_float32(
    vector: list[float], check: int
) -> None:
    unpacked = unpack_vector(pack_vector(vector, check))
    assert unpacked is not None
    row, read_check = unpacked
    assert list(row) == pytest.approx(unit(vector), abs=1e-6)
    assert read_check == check


@settings(max_examples=30)
@given(vectors, st.integers(0, 2**32 - 1), st.booleans(), st.booleans())
def test_a_stored_vector_reads_back_sealed_or_plain_with_numpy_or_without(
    vector: list[float], check: int, encrypted: bool, use_numpy: bool
) -> None:
    codec = Codec(generate_key() if encrypted else None)
    with pytest.MonkeyPatch.context() as patch:
        if not use_numpy:
            patch.setattr("statemw._numpy.AVAILABLE", False)
        data = codec.encode_vector(vector, check)
    assert (data[0] == 0x02) is encrypted
    row, read_check = codec.decode_vector("s", data)
    assert list(row) == pytest.approx(unit(vector), abs=1e-6)
    assert read_check == check


@given(st.lists(st.floats(-1e30, 1e30), min_size=1, max_size=16))
def test_vectors_stored_as_msgpack_lists_by_earlier_versions_still_read(
    vector: list[float],
) -> None:
    codec = Codec()
    old = codec.seal(msgpack.packb(vector))
    row, check = codec.decode_vector("s", old)
    assert check is None
    assert list(row) == pytest.approx(vector, rel=1e-6)


def test_a_384_dimension_vector_costs_under_1_6_kb_even_sealed() -> None:
    vector = [0.1] * 384
    assert len(Codec().encode_vector(vector, 1)) <= 1550
    assert len(Codec(generate_key()).encode_vector(vector, 1)) <= 1600


def reference_cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


@settings(max_examples=60)
@given(
    st.integers(1, 8).flatmap(
        lambda dims: st.tuples(
            st.lists(st.lists(small, min_size=dims, max_size=dims), max_size=20),
            st.lists(small, min_size=dims, max_size=dims),
        )
    )
)
def test_scores_are_cosines_with_numpy_and_without(
    case: tuple[list[list[float]], list[float]],
) -> None:
    rows, query = case
    expected = [reference_cosine(r, query) for r in rows]
    for use_numpy in (True, False):
        index = VectorIndex(use_numpy=use_numpy)
        for position, row in enumerate(rows):
            index.add(position, row, None)
        scores = index.scores(query, 0, len(rows))
        assert scores == pytest.approx(expected, abs=1e-4)


def test_positions_without_a_vector_score_minus_one() -> None:
    index = VectorIndex()
    index.add(2, [1.0, 0.0], None)
    index.add(3, [0.0, 1.0], None)
    index.drop([3])
    assert index.scores([1.0, 0.0], 0, 5) == pytest.approx([-1.0, -1.0, 1.0, -1.0, -1.0])


@pytest.fixture(params=["numpy", "pure-python"])
def scoring(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test below runs with numpy (scoring, sketches) and with the pure-Python fallback."""
    if request.param == "pure-python":
        monkeypatch.setattr("statemw._numpy.AVAILABLE", False)
    return str(request.param)


class Embedder:
    """A deterministic stand-in model that counts its calls and the texts it saw."""

    def __init__(self, dims: int = 64) -> None:
        self.calls = 0
        self.texts: list[str] = []
        self.dims = dims

    def vector(self, text: str) -> list[float]:
        out = [0.0] * self.dims
        for word in text.lower().split():
            out[zlib.crc32(word.encode()) % self.dims] += 1.0
        return out

    def __call__(self, text: str) -> list[float]:
        self.calls += 1
        self.texts.append(text)
        return self.vector(text)

    def many(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        self.texts.extend(texts)
        return [self.vector(t) for t in texts]


def saved_with(store: Store, messages: list[dict[str, Any]]) -> Session:
    """A new session holding `messages`, saved."""
    session = store.create()
    for message in messages:
        session.add_message(message)
    session.save()
    return session


def chat(n: int) -> list[dict[str, Any]]:
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message number {i} word{i}"}
        for i in range(n)
    ]


def test_each_message_is_embedded_once_in_the_web_pattern(store: Store, scoring: str) -> None:
    """Load, add the user's message, select with it as the query, answer, save: one model call
    per turn, each text once, the query reusing the newest message's vector."""
    model = Embedder()
    session = store.create()
    session.save()
    for turn in range(12):
        session = store.load(session.id)
        question = f"question {turn} about topic{turn}"
        session.add_message("user", question)
        before = model.calls
        session.get_history(relevant_to=question, embed=batched(model.many), k=2, max_tokens=200)
        assert model.calls - before == 1
        session.add_message("assistant", f"answer {turn}")
        session.save()
    assert len(model.texts) == len(set(model.texts))  # every text once: none embedded again
    assert len(model.texts) == 2 * 12 - 1  # the last answer was never needed


def test_a_backlog_is_embedded_in_one_batch(store: Store, scoring: str) -> None:
    model = Embedder()
    session = store.create()
    for message in chat(300):
        session.add_message(message)
    session.save()
    store.load(session.id).get_history(relevant_to="word7", embed=batched(model.many), k=3)
    assert model.calls == 1
    assert len(model.texts) == 301


def test_a_plain_embed_function_is_called_once_per_text(store: Store, scoring: str) -> None:
    model = Embedder()
    session = store.create()
    for message in chat(20):
        session.add_message(message)
    session.save()
    session.get_history(relevant_to="message number 19 word19", embed=model, k=3)
    assert model.calls == 20  # the query is the newest message: not embedded twice
    session.get_history(relevant_to="word3", embed=model, k=3)
    assert model.calls == 21


def test_stored_vectors_are_read_once_per_loaded_session(
    store: Store, scoring: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = Embedder()
    session = store.create()
    for message in chat(200):
        session.add_message(message)
    session.save()
    session.get_history(relevant_to="word3", embed=model, k=3)
    session.save()
    reads: list[tuple[int, int]] = []
    real = store.backend.read_vectors

    def counting(session_id: str, start: int, stop: int) -> dict[int, bytes]:
        reads.append((start, stop))
        return real(session_id, start, stop)

    monkeypatch.setattr(store.backend, "read_vectors", counting)
    again = store.load(session.id)
    calls = model.calls
    for query in ("word3", "word5", "word7"):
        again.get_history(relevant_to=query, embed=model, k=3)
    assert reads == [(0, 200)]
    assert model.calls == calls + 3  # only the queries
    again.add_message("user", "word9 again")
    again.get_history(relevant_to="word11", embed=model, k=3)
    assert reads == [(0, 200)]  # the new message is not stored: nothing to read
    again.save()
    again.get_history(relevant_to="word13", embed=model, k=3)
    assert reads == [(0, 200)]  # what this session saved, it holds already


@pytest.mark.anyio
async def test_aget_history_reads_stored_vectors_once_too(store: Store) -> None:
    model = Embedder()
    session = store.create()
    for message in chat(50):
        session.add_message(message)
    await session.asave()
    await session.aget_history(relevant_to="word3", embed=model, k=3)
    await session.asave()
    again = await store.aload(session.id)
    calls = model.calls
    first = await again.aget_history(relevant_to="word3", embed=model, k=3)
    assert first == again.get_history(relevant_to="word3", embed=model, k=3)
    assert model.calls == calls + 1  # one query, twice: the vector of "word3" is not a message


def test_numpy_arrays_from_embed_are_taken_as_they_are(store: Store) -> None:
    model = Embedder()
    session = store.create()
    for message in chat(30):
        session.add_message(message)
    session.save()
    sent = session.get_history(
        relevant_to="word5", embed=lambda t: np.asarray(model.vector(t)), k=1, max_tokens=40
    )
    assert "message number 5 word5" in [m["content"] for m in sent]
    session.save()
    again = store.load(session.id)
    assert again.get_history(relevant_to="word5", embed=model, k=1, max_tokens=40) == sent


def test_a_vector_saved_under_a_position_another_save_took_is_computed_again(
    store: Store, scoring: str
) -> None:
    model = Embedder()
    first = store.create()
    first.add_message("user", "hello there")
    first.save()
    mine = store.load(first.id)
    theirs = store.load(first.id)
    mine.add_message("user", "my fact word42")
    mine.get_history(relevant_to="my fact word42", embed=model, k=1)  # vector for position 1
    theirs.add_message("user", "their message")
    theirs.save()  # position 1 is theirs now
    mine.save()  # ours lands at 2; our vector was written for position 1
    calls = len(model.texts)
    again = store.load(first.id)
    sent = again.get_history(relevant_to="word42", embed=model, k=1, neighbours=False)
    assert [m["content"] for m in again.messages] == [
        "hello there",
        "their message",
        "my fact word42",
    ]
    assert "their message" in model.texts[calls:]  # its position held our vector: re-embedded
    assert sent[-1]["content"] == "my fact word42"


def test_a_different_embedding_model_recomputes_every_vector(store: Store, scoring: str) -> None:
    small, large = Embedder(4), Embedder(16)
    session = store.create()
    for message in chat(10):
        session.add_message(message)
    session.save()
    session.get_history(relevant_to="word1", embed=small, k=2)
    session.save()
    again = store.load(session.id)
    again.get_history(relevant_to="word1", embed=large, k=2)
    assert set(large.texts) >= {m["content"] for m in chat(10)}
    again.save()
    calls = large.calls
    store.load(session.id).get_history(relevant_to="word2", embed=large, k=2)
    assert large.calls == calls + 1  # the new vectors were stored


def test_a_replaced_log_forgets_the_old_vectors(store: Store, scoring: str) -> None:
    model = Embedder()
    session = store.create()
    for message in chat(6):
        session.add_message(message)
    session.get_history(relevant_to="word1", embed=model, k=2)
    session.messages = [
        {"role": "user", "content": "a new start"},
        {"role": "user", "content": "x"},
    ]
    sent = session.get_history(relevant_to="a new start", embed=model, k=1)
    assert [m["content"] for m in sent] == ["a new start", "x"]
    session.save()
    assert store.load(session.id).get_history(relevant_to="x", embed=model, k=1) == sent


def tool_turn(fact: str, n: int) -> list[dict[str, Any]]:
    """The user asks, a tool answers with the fact, the assistant sums up."""
    call = f"call{n}"
    return [
        {"role": "user", "content": f"can you look up the booking reference {n}?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call, "type": "function", "function": {"name": "db", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": call, "content": fact},
        {"role": "assistant", "content": "done"},
    ]


def test_selection_brings_in_the_turn_a_selected_question_led_to(
    store: Store, scoring: str
) -> None:
    """The question scores best, the fact lives in the tool result that answered it."""
    messages = chat(40) + tool_turn("reference is QX-7781", 1) + chat(40)
    session = store.load(saved_with(store, messages).id)
    model = Embedder(64)
    query = "look up the booking reference"
    with_turn = session.get_history(relevant_to=query, embed=model, k=1, max_tokens=400)
    without = session.get_history(
        relevant_to=query, embed=model, k=1, max_tokens=400, neighbours=False
    )
    assert "reference is QX-7781" in [m.get("content") for m in with_turn]
    assert "reference is QX-7781" not in [m.get("content") for m in without]
    check_rules(messages, with_turn)


@settings(max_examples=60, deadline=None)
@given(conversations(), st.integers(20, 600), st.integers(0, 4), st.booleans())
def test_semantic_selection_with_turns_keeps_the_rules_with_and_without_numpy(
    original: list[dict[str, Any]], budget: int, k: int, use_numpy: bool
) -> None:
    session = stored_session(original)
    session._vectors = SessionVectors()
    session._vectors.index = VectorIndex(use_numpy=use_numpy)  # pick its scoring
    sent = session.get_history(
        max_tokens=budget, relevant_to="x", embed=lambda t: [len(t) % 7, 1.0], k=k, format="raw"
    )
    check_rules(original, sent)
    check_budget(session, sent, budget)


def test_text_checks_tell_texts_apart() -> None:
    assert text_check("a") != text_check("b")
    assert text_check("\ud800") == text_check("\ud800")  # lone surrogates are texts too


def test_a_session_without_embed_keeps_no_vectors(store: Store) -> None:
    session: Session = store.create()
    session.add_message("user", "hi")
    session.get_history(last=5)
    assert session._vectors is None


class CountingKV:
    """Wraps a KV and counts the bytes set under each key prefix."""

    def __init__(self, kv: Any) -> None:
        self.kv = kv
        self.written: dict[str, int] = {}

    def set(self, key: str, value: bytes) -> None:
        prefix = key.split(":", 1)[0]
        self.written[prefix] = self.written.get(prefix, 0) + len(key) + len(value)
        self.kv.set(key, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name)


@pytest.mark.parametrize("kind", ["memory", "diskcache"])
def test_a_save_that_adds_a_vector_writes_that_vector_not_a_chunk(
    kind: str, tmp_path: Path
) -> None:
    """memory and diskcache keep a record per vector and an 8-byte bitmap per 64 positions:
    adding one vector to a session of 100 writes about its own size."""
    store = Store(store_url(kind, tmp_path))
    model = Embedder(384)
    session = store.create()
    for message in chat(100):
        session.add_message(message)
    session.save()
    session.get_history(relevant_to="word3", embed=model, k=3)
    session.save()
    counting = CountingKV(store.backend.kv)  # type: ignore[attr-defined]
    store.backend.kv = counting  # type: ignore[attr-defined]
    session.add_message("user", "one more message word101")
    session.get_history(relevant_to="one more message word101", embed=model, k=3)
    pending = dict(session._vectors.pending) if session._vectors else {}
    vector_bytes = sum(len(v) for p, v in pending.items() if p >= 0)
    index_bytes = sum(len(v) for p, v in pending.items() if p < 0)
    assert 1500 < vector_bytes < 1600  # one 384-dim vector
    session.save()
    written = sum(n for prefix, n in counting.written.items() if prefix in ("w", "x", "v"))
    assert written <= vector_bytes + index_bytes + 100  # its record, keys and a bitmap
    assert "v" not in counting.written  # no 64-vector chunk rewritten
    store.close()


def test_vectors_kept_whole_per_chunk_by_earlier_versions_still_read_and_move_once(
    store: Store,
) -> None:
    """A chunk record (position -> vector, 64 positions) reads as before; the first save that
    adds a vector to it moves it to a record per vector."""
    if store.backend.__class__.__name__ != "KVBackend":
        pytest.skip("the chunk layout was memory's and diskcache's")
    model = Embedder()
    session = store.create()
    for message in chat(10):
        session.add_message(message)
    session.save()
    codec = store.codec
    old = {
        p: codec.encode_vector(model.vector(m["content"]), text_check(m["content"]))
        for p, m in enumerate(chat(10))
    }
    kv = store.backend.kv  # type: ignore[attr-defined]
    kv.set(f"v:{session.id}:0", pack(old))
    assert store.backend.read_vectors(session.id, 0, 10) == old
    again = store.load(session.id)
    calls = model.calls
    again.add_message("user", "word4 again")
    again.get_history(relevant_to="word4 again", embed=model, k=1)
    assert model.calls == calls + 1  # only the new message: the old vectors were read
    again.save()
    assert kv.get(f"v:{session.id}:0") is None
    read = store.backend.read_vectors(session.id, 0, 11)
    assert {p: read[p] for p in old} == old
    assert 10 in read
    store.delete(session.id)
    assert store.backend.read_vectors(session.id, -11, 11) == {}


# -- long sessions: sketches, candidates, segments (statemw.sketch, window._sparse) -----------


@settings(max_examples=60, deadline=None)
@given(conversations(), st.integers(20, 600), st.integers(0, 4), st.booleans(), st.booleans())
def test_sparse_selection_keeps_the_rules(
    original: list[dict[str, Any]], budget: int, k: int, use_numpy: bool, neighbours: bool
) -> None:
    """The segment-reading path, forced onto short conversations, keeps every window rule."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("statemw.window.SPARSE_FROM", 0)
        patch.setattr("statemw.window.WINDOW", 2)  # segments with gaps even when short
        if not use_numpy:
            patch.setattr("statemw._numpy.AVAILABLE", False)
        session = stored_session(original)
        sent = session.get_history(
            max_tokens=budget,
            relevant_to="x",
            embed=lambda t: [len(t) % 7, 1.0, len(t) % 3],
            k=k,
            neighbours=neighbours,
            format="raw",
        )
    check_rules(original, sent)
    check_budget(session, sent, budget)


def long_chat(n: int, facts: dict[int, str]) -> list[dict[str, Any]]:
    """n messages of chat, tool turns every so often, facts (in tool results) at some turns."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a travel agent."}]
    turn = 0
    while len(messages) < n:
        turn += 1
        if turn in facts:
            messages += tool_turn(facts[turn], turn)
        else:
            messages += [
                {"role": "user", "content": f"question {turn} about city{turn % 37}"},
                {"role": "assistant", "content": f"answer {turn} with tip{turn % 11}"},
            ]
    return messages


class Reads:
    """Counts the vectors and messages a backend hands out."""

    def __init__(self, backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.vectors = self.messages = self.index = 0
        real_range, real_at, real_messages = (
            backend.read_vectors,
            backend.read_vectors_at,
            backend.read_messages,
        )

        def read_vectors(session_id: str, start: int, stop: int) -> dict[int, bytes]:
            out: dict[int, bytes] = real_range(session_id, start, stop)
            self.index += sum(1 for p in out if p < 0)
            self.vectors += sum(1 for p in out if p >= 0)
            return out

        def read_vectors_at(session_id: str, positions: Any) -> dict[int, bytes]:
            out: dict[int, bytes] = real_at(session_id, positions)
            self.vectors += len(out)
            return out

        def read_messages(session_id: str, start: int, stop: int) -> list[bytes]:
            out: list[bytes] = real_messages(session_id, start, stop)
            self.messages += len(out)
            return out

        monkeypatch.setattr(backend, "read_vectors", read_vectors)
        monkeypatch.setattr(backend, "read_vectors_at", read_vectors_at)
        monkeypatch.setattr(backend, "read_messages", read_messages)


def test_a_long_session_reads_sketches_and_a_few_vectors_per_web_turn(
    store: Store, scoring: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past window.SPARSE_FROM messages, a web turn (a fresh load) reads the sketch blocks,
    the vectors of the best candidates and of the newest unfinished block, and the messages
    around the candidates: not every vector or message; and it still finds an old fact that
    lives in a tool result."""
    messages = long_chat(1500, {40: "reference is QX-7781", 500: "locker code 4512"})
    model = Embedder(64)
    session = saved_with(store, messages)
    first = store.load(session.id)
    first.get_history(relevant_to="hello", embed=batched(model.many), k=3, max_tokens=400)
    first.save()  # the vectors, and the blocks of sketches that were complete
    assert len(store.backend.read_vectors(session.id, -100, 0)) == len(messages) // 64
    reads = Reads(store.backend, monkeypatch)
    calls = model.calls
    again = store.load(session.id)
    again.add_message("user", "can you look up the booking reference 40?")
    sent = again.get_history(
        relevant_to="can you look up the booking reference 40?",
        embed=batched(model.many),
        k=3,
        max_tokens=400,
    )
    assert model.calls == calls + 1  # the new message only
    assert "reference is QX-7781" in [m.get("content") for m in sent]
    assert reads.index == len(messages) // 64  # every block, once
    assert reads.vectors <= 64 + 64 + 8 * 3  # candidates and the unfinished block at most
    assert reads.messages < 300
    again.add_message("assistant", "it is QX-7781")
    again.save()
    calls = model.calls
    third = store.load(session.id)
    third.add_message("user", "and my locker code?")
    third.get_history(relevant_to="and my locker code?", embed=batched(model.many), k=3)
    assert model.calls == calls + 1  # the answer and the new message, in one call


def test_sparse_and_full_selection_agree_on_a_long_session(store: Store, scoring: str) -> None:
    messages = long_chat(900, {30: "reference is QX-1", 200: "reference is QX-2"})
    model = Embedder(64)
    session = saved_with(store, messages)
    session.get_history(relevant_to="hello", embed=batched(model.many), k=3)
    session.save()
    windows = []
    for sparse_from in (10**9, 512):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("statemw.window.SPARSE_FROM", sparse_from)
            loaded = store.load(session.id)
            windows.append(
                loaded.get_history(
                    relevant_to="look up the booking reference 200",
                    embed=batched(model.many),
                    k=4,
                    max_tokens=500,
                    format="raw",
                )
            )
    assert windows[0] == windows[1]
    assert "reference is QX-2" in [m.get("content") for m in windows[1]]
    check_rules(messages, windows[1])


@pytest.mark.parametrize("where", ["in a block", "after the last block"])
def test_a_vector_that_belongs_to_another_text_is_found_and_embedded_again(
    store: Store, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a racing save can leave: a vector (and, in a block, its sketch) made from another
    text. A candidate's check is verified when its message is read; a position no block covers
    is checked when it is read."""
    monkeypatch.setattr("statemw.window.SPARSE_FROM", 0)
    model = Embedder(64)
    messages = long_chat(300, {})
    session = saved_with(store, messages)
    session.get_history(relevant_to="hello", embed=batched(model.many), k=2)
    session.save()
    codec = store.codec
    position = 101 if where == "in a block" else 290
    other = "question 50 about city13"
    wrong = {position: codec.encode_vector(model.vector(other), text_check(other))}
    if where == "in a block":  # its sketch in the block made from the same wrong vector
        data = store.backend.read_vectors(session.id, -2, -1)[-2]
        dims, _, system, rows = codec.decode_sketch(session.id, data)
        size = len(rows) // 64
        slots = {i: rows[i * size : (i + 1) * size] for i in range(64)}
        slots[position - 64] = sketch.sketches([unit(model.vector(other))])[0]
        body = sketch.pack_block(dims, slots, [i for i in range(64) if system >> i & 1])
        wrong[-2] = codec.seal(body)
    store.backend.commit(_vectors_delta(store, session.id, wrong))
    again = store.load(session.id)
    model.texts.clear()
    sent = again.get_history(relevant_to=other, embed=batched(model.many), k=2, format="raw")
    assert messages[position]["content"] in model.texts  # embedded from its own text
    assert messages[position] not in sent
    assert {"role": "user", "content": other} in sent  # the real one


def _vectors_delta(store: Store, session_id: str, vectors: dict[int, bytes]) -> Delta:
    return Delta(session_id, store.clock(), vectors=vectors)


def test_sketches_are_the_same_with_numpy_and_without() -> None:
    rng = np.random.default_rng(3)
    units = rng.standard_normal((20, 384)).astype(np.float32)
    units /= np.linalg.norm(units, axis=1, keepdims=True)
    with_numpy = sketch.sketches(list(units))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("statemw._numpy.AVAILABLE", False)
        without = sketch.sketches([array("f", row.tobytes()) for row in units])
    assert with_numpy == without
    assert len(with_numpy[0]) == 64  # 512 bits for 384 dimensions


def test_sketch_blocks_are_sealed_on_an_encrypted_store() -> None:
    store = Store("memory://", encryption_key=generate_key())
    model = Embedder(64)
    session = store.create()
    for message in long_chat(200, {}):
        session.add_message(message)
    session.save()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("statemw.window.SPARSE_FROM", 0)
        session.get_history(relevant_to="hello", embed=batched(model.many), k=2)
    session.save()
    blocks = store.backend.read_vectors(session.id, -10, 0)
    assert len(blocks) == 3
    assert all(data[0] == 0x02 for data in blocks.values())  # sealed
    assert store.codec.decode_sketch(session.id, blocks[-1])[0] == 64


def test_a_new_embedding_model_on_a_long_session_makes_new_sketches(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("statemw.window.SPARSE_FROM", 0)
    small, large = Embedder(16), Embedder(32)
    messages = long_chat(200, {})
    session = saved_with(store, messages)
    session.get_history(relevant_to="hello", embed=batched(small.many), k=2)
    session.save()
    again = store.load(session.id)
    again.get_history(relevant_to="city7?", embed=batched(large.many), k=2)
    again.save()  # every vector again, with the new model
    again.get_history(relevant_to="city9?", embed=batched(large.many), k=2)
    again.save()  # and the blocks of its sketches
    blocks = store.backend.read_vectors(session.id, -4, 0)
    assert {store.codec.decode_sketch(session.id, b)[0] for b in blocks.values()} == {32}
    calls = large.calls
    third = store.load(session.id)
    sent = third.get_history(
        relevant_to="question 11 about city11", embed=batched(large.many), k=2, format="raw"
    )
    assert large.calls == calls + 1  # the query only
    assert {"role": "user", "content": "question 11 about city11"} in sent


@pytest.mark.anyio
async def test_aget_history_takes_the_sparse_path_too(store: Store) -> None:
    messages = long_chat(700, {60: "reference is QX-5150"})
    model = Embedder(64)
    session = store.create()
    for message in messages:
        session.add_message(message)
    await session.asave()
    await session.aget_history(relevant_to="hello", embed=batched(model.many), k=3)
    await session.asave()
    query = "can you look up the booking reference 60?"
    loaded = await store.aload(session.id)
    sent = await loaded.aget_history(relevant_to=query, embed=batched(model.many), k=3)
    assert "reference is QX-5150" in [m.get("content") for m in sent]
    again = store.load(session.id)
    assert again.get_history(relevant_to=query, embed=batched(model.many), k=3) == sent


def test_a_corrupt_sketch_block_is_a_corrupt_record(store: Store) -> None:
    model = Embedder(16)
    session = store.create()
    for message in long_chat(600, {}):
        session.add_message(message)
    session.save()
    session.get_history(relevant_to="hello", embed=batched(model.many), k=2)
    session.save()
    store.backend.commit(_vectors_delta(store, session.id, {-3: store.codec.seal(b"\xc1\x02")}))
    with pytest.raises(CorruptRecord):
        store.load(session.id).get_history(relevant_to="x?", embed=batched(model.many), k=2)
