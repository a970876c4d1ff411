"""Token counting: a fast default that needs no download, and any tokenizer you pass in.

`Store(url, count_tokens=fn)` takes `fn(text: str) -> int` (a tiktoken encoding's
`lambda t: len(enc.encode(t))`, a Hugging Face tokenizer, ...). Counts are taken once, when a
message is added, and stored with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

TokenCounter = Callable[[str], int]

MESSAGE_OVERHEAD = 4
"""Tokens a chat format spends per message on role and separators (OpenAI's is 3 to 4)."""


def approx_tokens(text: str) -> int:
    """About four characters per token, rounded up: within 10% of cl100k_base in aggregate on
    chat, prose and code (python bench/tokens.py; single short texts can be off by ~20%)."""
    return (len(text) + 3) // 4


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a message a model would read: content (or its text blocks) and tool calls,
    and the text of Responses-API items (a function call's arguments, a tool's output, a
    reasoning summary), which carry it outside `content`."""
    parts: list[str] = []
    for field in ("content", "arguments", "output"):
        _texts(message.get(field), parts)
    summary = message.get("summary")
    if isinstance(summary, list):  # a reasoning item's summary blocks (a statemw summary is True)
        _texts(summary, parts)
    for call in message.get("tool_calls") or ():
        if isinstance(call, Mapping):
            parts.append(json.dumps(call, default=str))
    return "\n".join(parts)


def _texts(value: Any, parts: list[str]) -> None:
    """Append the text of a string or of a list of content blocks."""
    if isinstance(value, str):
        parts.append(value)
    elif isinstance(value, list):
        for block in value:
            if isinstance(block, Mapping):
                for field in ("text", "thinking", "input", "content"):
                    text = block.get(field)
                    if isinstance(text, str):
                        parts.append(text)
                    elif text is not None:
                        parts.append(json.dumps(text, default=str))
            elif isinstance(block, str):
                parts.append(block)


def count_message(message: Mapping[str, Any], count: TokenCounter = approx_tokens) -> int:
    content = message.get("content")
    if type(content) is str and len(message) == 2:  # {"role", "content"}: the usual message
        return count(content) + MESSAGE_OVERHEAD
    return count(message_text(message)) + MESSAGE_OVERHEAD
