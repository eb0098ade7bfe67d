//! `toolgate.toml`: the [`toolgate_config`] crate, re-exported so the gateway's modules
//! keep naming it `crate::config`.

pub use toolgate_config::*;
