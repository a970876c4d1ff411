"""The OpenAI Agents SDK with statemw as its session store, on a scripted model (no network).

    python -m examples.agents_openai

Each turn the model calls the `weather` tool for the city the user named (with a reasoning item
first, as reasoning models do), then answers from the tool's output; a city it was told earlier
is remembered through the session, across a restart of the process.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from collections.abc import AsyncIterator
from typing import Any

from agents import (
    Agent,
    Model,
    ModelResponse,
    Runner,
    Usage,
    function_tool,
    set_tracing_disabled,
)
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputItem,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
)
from openai.types.responses.response_reasoning_item import Summary

from statemw import Store
from statemw.integrations.openai_agents import StatemwSession

set_tracing_disabled(True)  # the example runs offline: no traces are exported

FORECASTS = {"Berlin": "rain, 12 C", "Lisbon": "sun, 24 C", "Oslo": "snow, -3 C"}


@function_tool
def weather(city: str) -> str:
    """Today's weather in a city."""
    return FORECASTS.get(city, "unknown")


def _text(item: Any) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    return " ".join(str(p.get("text", "")) for p in content or [] if isinstance(p, dict))


class ScriptedModel(Model):
    """A deterministic stand-in for an LLM: call `weather` for the city in the newest user turn
    (or the last city anyone named, from history), then answer with the tool's output."""

    def __init__(self) -> None:
        self.calls = 0
        self.inputs: list[list[Any]] = []

    def _respond(self, items: list[Any]) -> list[ResponseOutputItem]:
        self.calls += 1
        self.inputs.append(items)
        last = items[-1]
        n = self.calls
        if last.get("type") == "function_call_output":
            text = f"The weather: {last['output']}."
            return [
                ResponseOutputMessage(
                    id=f"msg_{n}",
                    type="message",
                    role="assistant",
                    status="completed",
                    content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
                )
            ]
        cities = [
            m.group(0)
            for item in items
            if item.get("role") == "user"
            for m in re.finditer("|".join(FORECASTS), _text(item))
        ]
        city = cities[-1] if cities else "nowhere"
        return [
            ResponseReasoningItem(
                id=f"rs_{n}",
                type="reasoning",
                summary=[Summary(type="summary_text", text=f"The user means {city}.")],
            ),
            ResponseFunctionToolCall(
                id=f"fc_{n}",
                call_id=f"call_{n}",
                type="function_call",
                name="weather",
                arguments=json.dumps({"city": city}),
                status="completed",
            ),
        ]

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[Any],
        *args: Any,
        **kwargs: Any,
    ) -> ModelResponse:
        items = [{"role": "user", "content": input}] if isinstance(input, str) else list(input)
        return ModelResponse(output=self._respond(items), usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the example runs without streaming")


def make_agent(model: Model) -> Agent[Any]:
    return Agent(
        name="forecaster", instructions="Answer about weather.", model=model, tools=[weather]
    )


async def main(directory: str) -> None:
    model = ScriptedModel()
    agent = make_agent(model)
    store = Store(f"diskcache://{directory}")
    session = StatemwSession("trip-planning", store=store, user_id="harsh")
    print((await Runner.run(agent, "What is the weather in Berlin?", session=session)).final_output)
    print((await Runner.run(agent, "And in Lisbon?", session=session)).final_output)
    store.close()

    store = Store(f"diskcache://{directory}")  # a new process: the same conversation
    session = StatemwSession("trip-planning", store=store)
    print((await Runner.run(agent, "Once more, please.", session=session)).final_output)
    print(len(await session.get_items()), "items;", len(await session.get_items(limit=3)), "in a 3")
    store.close()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(tmp))
