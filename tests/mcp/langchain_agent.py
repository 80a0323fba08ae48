"""A LangChain agent loop over postagent's MCP tools, for tests/it/mcp_clients.rs.

langchain-mcp-adapters turns /mcp's tools into LangChain tools; LangGraph's ReAct agent runs
them, driven by a scripted chat model (no network, no weights): it lists the inbox, then
replies to MESSAGE_ID. Prints one JSON line: the tools seen, each tool call's output, the
final answer.
"""

import asyncio
import json
import os

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from langchain_mcp_adapters.client import MultiServerMCPClient
from langgraph.prebuilt import create_react_agent


class ScriptedModel(FakeMessagesListChatModel):
    """Answers with the scripted messages in turn; tools are bound by the script."""

    def bind_tools(self, tools, **kwargs):
        return self


def text_of(content):
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)


async def main():
    client = MultiServerMCPClient(
        {
            "postagent": {
                "transport": "streamable_http",
                "url": os.environ["MCP_URL"],
                "headers": {"Authorization": f"Bearer {os.environ['MCP_KEY']}"},
            }
        }
    )
    tools = await client.get_tools()
    model = ScriptedModel(
        responses=[
            AIMessage(content="", tool_calls=[{"name": "list_messages", "args": {"limit": 10}, "id": "call_1"}]),
            AIMessage(
                content="",
                tool_calls=[
                    {
                        "name": "reply_to_message",
                        "args": {"message_id": os.environ["MESSAGE_ID"], "text": "Thanks, I am on it."},
                        "id": "call_2",
                    }
                ],
            ),
            AIMessage(content="I replied to your newest mail."),
        ]
    )
    agent = create_react_agent(model, tools)
    result = await agent.ainvoke({"messages": [("user", "Answer my newest mail.")]})
    calls = [{"tool": m.name, "output": text_of(m.content)} for m in result["messages"] if m.type == "tool"]
    print(json.dumps({"tools": [t.name for t in tools], "calls": calls, "final": text_of(result["messages"][-1].content)}))


asyncio.run(main())
