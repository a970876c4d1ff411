"""Google ADK with statemw as its session service, on a scripted model (no network).

    python -m examples.agents_adk

Each turn the model calls the `weather` tool for the city the user named, then answers from the
tool's response; the tool also writes `user:` state (the user's last city, shared by all of
their sessions) and the session survives a restart of the process.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import AsyncGenerator

from google.adk.agents import LlmAgent
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.tools.tool_context import ToolContext
from google.genai import types

from statemw import Store
from statemw.integrations.adk import StatemwSessionService

APP = "forecaster"
USAGE = types.GenerateContentResponseUsageMetadata(prompt_token_count=1, candidates_token_count=1)
FORECASTS = {"Berlin": "rain, 12 C", "Lisbon": "sun, 24 C", "Oslo": "snow, -3 C"}


def weather(city: str, tool_context: ToolContext) -> dict[str, str]:
    """Today's weather in a city."""
    tool_context.state["user:last_city"] = city
    return {"forecast": FORECASTS.get(city, "unknown")}


class ScriptedLlm(BaseLlm):
    """A deterministic stand-in for an LLM: call `weather` for the last city the user named in
    the history it is sent, then answer with the tool's response."""

    model: str = "scripted"
    calls: int = 0

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        self.calls += 1
        last = llm_request.contents[-1]
        parts = last.parts or []
        response = next((p.function_response for p in parts if p.function_response), None)
        if response is not None:
            forecast = (response.response or {}).get("forecast")
            text = f"The weather: {forecast}."
            yield LlmResponse(
                content=types.Content(role="model", parts=[types.Part(text=text)]),
                usage_metadata=USAGE,
            )
            return
        said = " ".join(
            p.text or "" for c in llm_request.contents if c.role == "user" for p in c.parts or []
        )
        found = re.findall("|".join(FORECASTS), said)
        city = found[-1] if found else "nowhere"
        call = types.FunctionCall(id=f"call_{self.calls}", name="weather", args={"city": city})
        yield LlmResponse(
            content=types.Content(role="model", parts=[types.Part(function_call=call)])
        )


def make_agent(llm: BaseLlm) -> LlmAgent:
    return LlmAgent(
        name="forecaster", model=llm, instruction="Answer about weather.", tools=[weather]
    )


async def ask(runner: Runner, user_id: str, session_id: str, text: str) -> str:
    """One turn: the agent's final text."""
    message = types.Content(role="user", parts=[types.Part(text=text)])
    reply = ""
    async for event in runner.run_async(
        user_id=user_id, session_id=session_id, new_message=message
    ):
        if event.content and event.content.parts and event.content.parts[0].text:
            reply = event.content.parts[0].text
    return reply


async def main(directory: str) -> None:
    agent = make_agent(ScriptedLlm())
    store = Store(f"diskcache://{directory}")
    service = StatemwSessionService(store=store)
    runner = Runner(agent=agent, app_name=APP, session_service=service)
    session = await service.create_session(app_name=APP, user_id="harsh")
    print(await ask(runner, "harsh", session.id, "What is the weather in Berlin?"))
    print(await ask(runner, "harsh", session.id, "And in Oslo?"))
    store.close()

    store = Store(f"diskcache://{directory}")  # a new process: the same conversation
    service = StatemwSessionService(store=store)
    runner = Runner(agent=agent, app_name=APP, session_service=service)
    print(await ask(runner, "harsh", session.id, "Once more, please."))
    again = await service.get_session(app_name=APP, user_id="harsh", session_id=session.id)
    assert again is not None
    print(len(again.events), "events; the user's last city:", again.state["user:last_city"])
    store.close()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(tmp))
