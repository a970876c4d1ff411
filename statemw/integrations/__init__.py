"""statemw behind agent frameworks' own session interfaces (each an optional extra).

    statemw.integrations.openai_agents.StatemwSession        OpenAI Agents SDK `Session`
    statemw.integrations.langchain.StatemwChatMessageHistory  LangChain `BaseChatMessageHistory`
    statemw.integrations.adk.StatemwSessionService            Google ADK `BaseSessionService`

Import the module of the framework you use; this package imports none of them.
"""
