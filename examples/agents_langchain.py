"""LangChain with statemw as its chat message history, on a scripted chat model (no network).

    python -m examples.agents_langchain

A small tool-calling loop runs inside `RunnableWithMessageHistory`: the model calls the `weather`
tool for the last city the user named, then answers from the tool's result. The history lives in
statemw (human, AI with tool calls, tool and system messages), across a restart of the process.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory
from langchain_core.tools import tool

from statemw import Store
from statemw.integrations.langchain import StatemwChatMessageHistory

FORECASTS = {"Berlin": "rain, 12 C", "Lisbon": "sun, 24 C", "Oslo": "snow, -3 C"}


@tool
def weather(city: str) -> str:
    """Today's weather in a city."""
    return FORECASTS.get(city, "unknown")


class ScriptedChatModel(BaseChatModel):
    """A deterministic stand-in for a chat model: a tool call for the last city the user named,
    then an answer from the tool's result."""

    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls += 1
        last = messages[-1]
        if isinstance(last, ToolMessage):
            reply = AIMessage(f"The weather: {last.content}.", id=f"ai-{self.calls}")
        else:
            said = " ".join(m.text for m in messages if isinstance(m, HumanMessage))
            found = re.findall("|".join(FORECASTS), said)
            call = {"name": "weather", "args": {"city": found[-1] if found else "nowhere"}}
            reply = AIMessage(
                "", id=f"ai-{self.calls}", tool_calls=[{**call, "id": f"call_{self.calls}"}]
            )
        return ChatResult(generations=[ChatGeneration(message=reply)])


def tool_loop(model: BaseChatModel, messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """One turn: the model's replies and the weather tool's results, until the model answers."""
    new: list[BaseMessage] = []
    while True:
        reply = model.invoke([*messages, *new])
        new.append(reply)
        if not isinstance(reply, AIMessage) or not reply.tool_calls:
            return new
        for call in reply.tool_calls:
            result = weather.invoke(call["args"])
            new.append(ToolMessage(str(result), tool_call_id=str(call["id"])))


def make_chain(
    model: BaseChatModel, history: Callable[[str], BaseChatMessageHistory]
) -> RunnableWithMessageHistory:
    """A tool loop whose new messages (AI tool call, tool result, AI answer) go to the history
    `history(session_id)` gives (e.g. `lambda sid: StatemwChatMessageHistory(sid, store=...)`)."""

    def turn(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
        return tool_loop(model, messages)

    with warnings.catch_warnings():  # langchain-core 1.x points to LangGraph; it still works
        warnings.filterwarnings("ignore", "RunnableWithMessageHistory is deprecated")
        return RunnableWithMessageHistory(RunnableLambda(turn), history)


async def main(directory: str) -> None:
    model = ScriptedChatModel()
    config: Any = {"configurable": {"session_id": "trip-planning"}}
    store = Store(f"diskcache://{directory}")
    chain = make_chain(model, lambda sid: StatemwChatMessageHistory(sid, store=store))
    print((await chain.ainvoke([HumanMessage("What is the weather in Berlin?")], config))[-1].text)
    print((await chain.ainvoke([HumanMessage("And in Oslo?")], config))[-1].text)
    store.close()

    store = Store(f"diskcache://{directory}")  # a new process: the same conversation
    chain = make_chain(model, lambda sid: StatemwChatMessageHistory(sid, store=store))
    print((await chain.ainvoke([HumanMessage("Once more, please.")], config))[-1].text)
    history = StatemwChatMessageHistory("trip-planning", store=store)
    print(len(await history.aget_messages()), "messages")
    store.close()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(tmp))
