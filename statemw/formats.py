"""Provider formats for get_history: OpenAI chat messages, Anthropic's system + messages.

Messages are stored exactly as given; these functions shape copies for a provider. Role aliases
("agent", "bot", "ai" -> "assistant"; "human" -> "user") are mapped, so the seed article's
`add_message("agent", ...)` reaches a model as an assistant turn.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from statemw.errors import InvalidValue
from statemw.messages import Message

ROLE_ALIASES = {"agent": "assistant", "bot": "assistant", "ai": "assistant", "human": "user"}
SUMMARY_PREFIX = "Summary of the earlier conversation: "
LEADING_USER_TURN = "(The conversation so far begins earlier.)"
"""Anthropic rejects messages that start with an assistant turn (a window can cut there): this
user turn is put first in that case."""


def _role(message: Message) -> str:
    role = str(message.get("role"))
    return ROLE_ALIASES.get(role, role)


def detach(copies: list[Message]) -> list[Message]:
    """Shallow copies of messages, made to share nothing a caller could change in place."""
    for copy in copies:
        _detach(copy)
    return copies


def _detach(copy: Message) -> None:
    """Copy a shallow copy's nested lists and dicts (content blocks, tool calls) too."""
    for key, value in copy.items():
        if type(value) in _NESTED:
            copy[key] = _copied(value)


def _copied(value: Any) -> Any:
    kind = type(value)
    if kind is list:
        return [_copied(item) for item in value]
    if kind is dict:
        return {key: _copied(item) for key, item in value.items()}
    if kind is tuple:
        return tuple([_copied(item) for item in value])
    return value


_NESTED = frozenset((list, dict, tuple))


def to_raw(messages: Sequence[Message]) -> list[Message]:
    """The stored dicts (copies); a summary carries `"summary": True`."""
    return detach([dict(m) for m in messages])


def to_openai(messages: Sequence[Message]) -> list[Message]:
    """OpenAI chat messages (copies); the summary is a system message named "summary"."""
    aliases = ROLE_ALIASES
    return [
        message.copy()  # the usual message, a role and a text: its copy is its OpenAI form
        if len(message) == 2
        and type(message.get("content")) is str
        and message.get("role") not in aliases
        else _openai(dict(message))
        for message in messages
    ]


def _openai(copy: Message) -> Message:
    """to_openai of one message, in place on a shallow copy made for it (detached)."""
    _detach(copy)
    role = copy.get("role")
    if role in ROLE_ALIASES:
        copy["role"] = ROLE_ALIASES[role]
    if "summary" in copy and copy.pop("summary") is True:
        copy["name"] = "summary"
    return copy


def _blocks(content: Any) -> list[Any]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return list(content)
    return [{"type": "text", "text": json.dumps(content)}]


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return {"arguments": raw}
    return raw if raw is not None else {}


def to_anthropic(messages: Sequence[Message]) -> dict[str, Any]:
    """{"system": text, "messages": [...]}: system messages (the summary first) joined into
    `system`; OpenAI tool calls become tool_use blocks and tool results tool_result blocks in a
    user turn; consecutive turns of one role are merged and the first turn is a user's, as
    Anthropic requires (LEADING_USER_TURN goes first when the window starts with the assistant)."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = _role(message)
        content = message.get("content")
        if role == "system":
            text = content if isinstance(content, str) else json.dumps(content)
            system.append(SUMMARY_PREFIX + text if message.get("summary") is True else text)
            continue
        if role == "tool":
            role, blocks = (
                "user",
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": message.get("tool_call_id"),
                        "content": content if content is not None else "",
                    }
                ],
            )
        else:
            blocks = _blocks(content)
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id"),
                        "name": function.get("name"),
                        "input": _arguments(function.get("arguments")),
                    }
                )
        if role not in ("user", "assistant"):
            raise InvalidValue(f"Anthropic has no role {message.get('role')!r}")
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = _blocks(turns[-1]["content"]) + blocks
        elif isinstance(content, str) and not message.get("tool_calls") and role == _role(message):
            turns.append({"role": role, "content": content})
        else:
            turns.append({"role": role, "content": blocks})
    if turns and turns[0]["role"] == "assistant":
        turns.insert(0, {"role": "user", "content": LEADING_USER_TURN})
    return {"system": "\n\n".join(system), "messages": turns}


FORMATS = {"openai": to_openai, "anthropic": to_anthropic, "raw": to_raw}


def shape_held(messages: list[Message], format: str) -> Any:
    """shape() of messages statemw holds (get_history's): the result shares nothing mutable
    with them, whichever the format."""
    if format == "openai":
        return to_openai(messages)
    if format == "raw":
        return to_raw(messages)
    return shape(to_raw(messages), format)


def shape(messages: Sequence[Message], format: str) -> Any:
    try:
        convert = FORMATS[format]
    except KeyError:
        raise InvalidValue(f"format must be one of {sorted(FORMATS)}, got {format!r}") from None
    return convert(messages)
