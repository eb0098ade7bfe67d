//! Run the demo server by hand: `cargo run -p toolgate-demo --example serve`
//! speaks MCP over stdio; `... --example serve -- 127.0.0.1:8931` serves
//! Streamable HTTP at `http://127.0.0.1:8931/mcp` until Ctrl-C.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1) {
        None => toolgate_demo::serve_stdio().await?,
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            eprintln!("serving http://{}/mcp", listener.local_addr()?);
            let ctrl_c = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            toolgate_demo::serve_http(listener, ctrl_c).await?;
        }
    }
    Ok(())
}
