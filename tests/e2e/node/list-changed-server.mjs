// A stdio MCP server (TypeScript SDK v1, `McpServer`) whose tool list changes on demand:
// `add_tool` registers `added_tool` (200 ms later), and the SDK announces
// `notifications/tools/list_changed`.
// Used by test_virtual.py to check that a member's list_changed reaches a virtual server's
// client.
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';

const server = new McpServer({ name: 'list-changed', version: '1.0.0' });
let added = false;
// The tool is added a moment after the answer, as a server whose tools change on their own
// would: the notification then comes outside any request (the GET stream; a 2026-07-28
// client's `subscriptions/listen`).
server.registerTool('add_tool', { description: 'Adds `added_tool` to the tool list.' }, async () => {
  if (!added) {
    added = true;
    setTimeout(() => {
      server.registerTool('added_tool', { description: 'Appears after add_tool.' }, async () => ({
        content: [{ type: 'text', text: 'the added tool ran' }],
      }));
    }, 200);
  }
  return { content: [{ type: 'text', text: 'tool list changed' }] };
});
await server.connect(new StdioServerTransport());
