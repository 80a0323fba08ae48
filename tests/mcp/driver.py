"""Drives postagent's MCP server with the official MCP Python SDK, for tests/it/mcp_clients.rs.

Reads one JSON command per line on stdin and answers one JSON line on stdout:
  {"op": "list_tools"}                      -> {"tools": [...]}
  {"op": "call", "name": N, "args": {...}}  -> the CallToolResult as JSON
The transport is chosen by MCP_TRANSPORT: "http" (MCP_URL + MCP_KEY, Streamable HTTP) or
"stdio" (MCP_COMMAND, a JSON list: the command line of `postagent mcp`).
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def serve(session):
    init = await session.initialize()
    print(json.dumps({"protocol": init.protocol_version, "server": init.server_info.name}), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line.strip():
            break
        cmd = json.loads(line)
        if cmd["op"] == "list_tools":
            result = await session.list_tools()
            print(json.dumps({"tools": [dump(t) for t in result.tools]}), flush=True)
        elif cmd["op"] == "call":
            result = await session.call_tool(cmd["name"], cmd.get("args", {}))
            print(json.dumps(dump(result)), flush=True)
        else:
            print(json.dumps({"error": f"unknown op {cmd['op']}"}), flush=True)


async def main():
    if os.environ.get("MCP_TRANSPORT", "http") == "stdio":
        from mcp.client.stdio import StdioServerParameters, stdio_client

        argv = json.loads(os.environ["MCP_COMMAND"])
        params = StdioServerParameters(command=argv[0], args=argv[1:], env=dict(os.environ))
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await serve(session)
        return
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {os.environ['MCP_KEY']}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with streamable_http_client(os.environ["MCP_URL"], http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                await serve(session)


asyncio.run(main())
