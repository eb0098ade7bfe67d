//! The bundled demo MCP server (work in progress).
