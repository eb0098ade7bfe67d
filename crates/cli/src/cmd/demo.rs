//! `toolgate demo`: the bundled demo MCP server (a dental-planning practice).

use std::process::ExitCode;

use anyhow::{Context, Result};

/// Runs the demo server over stdio (default) or Streamable HTTP.
pub fn run(http: Option<String>, stateless: bool) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match http {
            None => toolgate_demo::serve_stdio()
                .await
                .context("demo server (stdio)")?,
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(&addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                eprintln!(
                    "toolgate demo: listening on http://{}{}",
                    listener.local_addr()?,
                    toolgate_demo::MCP_PATH
                );
                let options = toolgate_demo::HttpOptions::new()
                    .stateless(stateless)
                    .json_response(stateless);
                toolgate_demo::serve_http_with(
                    listener,
                    async {
                        let _ = tokio::signal::ctrl_c().await;
                    },
                    options,
                )
                .await
                .context("demo server (http)")?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
