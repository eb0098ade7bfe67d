//! `toolgate connect|disconnect|connections`: each identity's own credentials at servers
//! with `auth = "oauth"` (docs/OAUTH.md).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::{load_config, now_ms, open_store, ConfigArg, Escaped};
use toolgate_gateway::oauth::Broker;

/// `connect` and `disconnect`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    /// The server (a `[[servers]]` name with `auth = "oauth"`).
    pub server: String,
    /// The identity to connect: a grant's identity (its label unless set), or a JWT
    /// subject with `[auth.jwt]`.
    #[arg(long)]
    pub identity: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// `connect`: do not try to open the URL in a browser.
    #[arg(long)]
    pub no_browser: bool,
    #[command(flatten)]
    pub config: ConfigArg,
}

fn broker(cfg: &toolgate_gateway::Config) -> Result<Arc<Broker>> {
    match Broker::for_config(cfg).map_err(anyhow::Error::msg)? {
        Some(b) => Ok(b),
        None => anyhow::bail!(
            "no server in the config has `auth = \"oauth\"` (docs/OAUTH.md): there is nothing to connect"
        ),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `toolgate connect SERVER --identity ID`: begins the consent flow and prints the URL.
pub fn connect(a: &ConnectArgs) -> Result<ExitCode> {
    let cfg = load_config(&a.config)?;
    let broker = broker(&cfg)?;
    let store = open_store(&cfg)?;
    let url = runtime()?.block_on(broker.begin(&store, &cfg, &a.server, &a.identity, now_ms()))?;
    let callback = toolgate_gateway::oauth::redirect_uri(&cfg);
    if a.json {
        println!(
            "{}",
            serde_json::json!({"server": a.server, "identity": a.identity, "authorization_url": url, "callback": callback})
        );
    } else {
        println!(
            "Open this URL as `{}` to connect it to server `{}` (valid 10 minutes):\n\n  {url}\n\nThe authorization server sends the browser back to {callback}: the gateway (`toolgate serve`) must be running there to finish.",
            Escaped(&a.identity),
            Escaped(&a.server)
        );
        if !a.no_browser {
            open_browser(&url);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens `url` with the desktop's opener when there is one (never fails the command).
fn open_browser(url: &str) {
    let has_display =
        std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    let opener = if cfg!(target_os = "macos") {
        Some("open")
    } else if has_display {
        Some("xdg-open")
    } else {
        None
    };
    if let Some(o) = opener {
        let _ = std::process::Command::new(o)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}

/// `toolgate disconnect SERVER --identity ID`: revokes and forgets the identity's tokens.
pub fn disconnect(a: &ConnectArgs) -> Result<ExitCode> {
    let cfg = load_config(&a.config)?;
    let broker = broker(&cfg)?;
    let store = open_store(&cfg)?;
    let (gone, note) = runtime()?.block_on(broker.disconnect(&store, &a.server, &a.identity))?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"server": a.server, "identity": a.identity, "disconnected": gone, "revocation": note})
        );
    } else if gone {
        println!(
            "identity `{}` disconnected from `{}`{}",
            Escaped(&a.identity),
            Escaped(&a.server),
            note.map(|n| format!(" ({})", Escaped(&n)))
                .unwrap_or_else(|| " (tokens revoked at the authorization server)".into())
        );
    } else {
        println!(
            "identity `{}` had no connection to `{}`",
            Escaped(&a.identity),
            Escaped(&a.server)
        );
    }
    Ok(if gone {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `toolgate connections`: every identity's connection (never a token).
pub fn list(config: &ConfigArg, json: bool) -> Result<ExitCode> {
    let cfg = load_config(config)?;
    let store = open_store(&cfg)?;
    let conns = store.connections()?;
    if json {
        let v: Vec<_> = conns
            .iter()
            .map(toolgate_gateway::api::connections::connection_json)
            .collect();
        println!("{}", serde_json::json!({"connections": v}));
        return Ok(ExitCode::SUCCESS);
    }
    if conns.is_empty() {
        println!("no connections (toolgate connect SERVER --identity ID makes one)");
    }
    let now = now_ms();
    for c in conns {
        let left = match c.expires_at_ms {
            Some(e) if e > now => format!("access token valid {} s more", (e - now) / 1000),
            Some(_) => "access token expired (refreshed at the next call)".into(),
            None => "no expiry given".into(),
        };
        println!(
            "{}  {}  subject {}  client {}  {left}",
            Escaped(&c.server),
            Escaped(&c.identity),
            Escaped(c.subject.as_deref().unwrap_or("?")),
            Escaped(&c.client_id)
        );
    }
    Ok(ExitCode::SUCCESS)
}
