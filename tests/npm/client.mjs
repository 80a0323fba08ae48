// Drives postagent's MCP server with the official MCP TypeScript SDK, for
// tests/it/mcp_clients.rs: the same line protocol as tests/mcp/driver.py.
//   stdin  {"op": "list_tools"} | {"op": "call", "name": N, "args": {...}}
//   stdout {"tools": [...]}     | the CallToolResult
// MCP_URL and MCP_KEY name the server and the API key.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import readline from "node:readline";

const transport = new StreamableHTTPClientTransport(new URL(process.env.MCP_URL), {
  requestInit: { headers: { Authorization: `Bearer ${process.env.MCP_KEY}` } },
});
const client = new Client({ name: "postagent-tests", version: "1.0.0" });
await client.connect(transport);
console.log(JSON.stringify({ protocol: transport.protocolVersion ?? null, server: client.getServerVersion()?.name }));

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) break;
  const cmd = JSON.parse(line);
  if (cmd.op === "list_tools") {
    const { tools } = await client.listTools();
    console.log(JSON.stringify({ tools }));
  } else if (cmd.op === "call") {
    const result = await client.callTool({ name: cmd.name, arguments: cmd.args ?? {} });
    console.log(JSON.stringify(result));
  } else {
    console.log(JSON.stringify({ error: `unknown op ${cmd.op}` }));
  }
}
await client.close();
