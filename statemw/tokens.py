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
    """The text of a message a model would read: content (or its text blocks) and tool calls."""
    parts: list[str] = []
    content = message.get("content")
    if isinstance(content, str):
        parts.append(content)
    elif isinstance(content, list):
        for block in content:
            if isinstance(block, Mapping):
                for field in ("text", "thinking", "input", "content"):
                    value = block.get(field)
                    if isinstance(value, str):
                        parts.append(value)
                    elif value is not None:
                        parts.append(json.dumps(value, default=str))
            elif isinstance(block, str):
                parts.append(block)
    for call in message.get("tool_calls") or ():
        if isinstance(call, Mapping):
            parts.append(json.dumps(call, default=str))
    return "\n".join(parts)


def count_message(message: Mapping[str, Any], count: TokenCounter = approx_tokens) -> int:
    return count(message_text(message)) + MESSAGE_OVERHEAD
