//! The config validator over files held in memory (and once on disk).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use toolgate_config::{
    AuditStore, Config, DiskFiles, Durability, Files, MemFiles, StoreUrl, Transport,
    DEFAULT_LISTEN, DEFAULT_MAX_BODY,
};

const GOOD: &str = "[policies]\np = \"p.json\"\n[[servers]]\nname = \"demo\"\ncommand = \"toolgate\"\nargs = [\"demo\", \"--stdio\"]\npolicy = \"p\"\n[[servers]]\nname = \"web\"\nurl = \"http://127.0.0.1:9/mcp\"\nheaders = { Authorization = \"Bearer x\" }\n";

fn load(files: &MemFiles) -> Result<Config, toolgate_config::ConfigError> {
    Config::load_with(Path::new("/etc/tg/toolgate.toml"), files)
}

fn errors(files: &MemFiles) -> String {
    load(files).unwrap_err().errors.join("\n")
}

#[test]
fn a_good_config() {
    let files = MemFiles::new()
        .with("/etc/tg/toolgate.toml", GOOD)
        .with("/etc/tg/p.json", r#"{"version":"1","default":"deny"}"#);
    let c = load(&files).unwrap();
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.max_body, DEFAULT_MAX_BODY);
    assert_eq!(c.servers.len(), 2);
    assert!(c.policies.contains_key("p"));
    assert_eq!(c.policy_files["p"], PathBuf::from("/etc/tg/p.json"));
    assert_eq!(c.policy_versions["p"].len(), 16);
    assert!(matches!(c.servers[1].transport, Transport::Http { .. }));
    assert_eq!(
        c.store,
        StoreUrl::Sqlite {
            url: "sqlite://toolgate.db".into(),
            path: "/etc/tg/toolgate.db".into()
        }
    );
    assert_eq!(
        c.audit.store,
        AuditStore::Sqlite {
            path: "/etc/tg/toolgate-audit.db".into(),
            durability: Durability::default()
        }
    );
    assert_eq!(
        c.watched_files(),
        vec![
            PathBuf::from("/etc/tg/toolgate.toml"),
            PathBuf::from("/etc/tg/p.json")
        ]
    );
}

#[test]
fn a_good_config_on_disk() {
    let d = std::env::temp_dir().join(format!("toolgate-config-good-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("p.json"), r#"{"version":"1","default":"deny"}"#).unwrap();
    std::fs::write(d.join("toolgate.toml"), GOOD).unwrap();
    let c = Config::load(&d.join("toolgate.toml")).unwrap();
    assert!(c.policies.contains_key("p"));
    assert_eq!(
        DiskFiles.read(&d.join("p.json")).unwrap(),
        r#"{"version":"1","default":"deny"}"#
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_missing_config_file() {
    let e = load(&MemFiles::new()).unwrap_err();
    assert_eq!(e.file, PathBuf::from("/etc/tg/toolgate.toml"));
    assert!(e.errors[0].starts_with("cannot read the file: "), "{e}");
}

#[test]
fn a_missing_policy_file() {
    let files = MemFiles::new().with(
        "/etc/tg/toolgate.toml",
        "[policies]\nq = \"missing.json\"\n",
    );
    let all = errors(&files);
    assert!(
        all.starts_with("policies.q: cannot read `/etc/tg/missing.json`: "),
        "{all}"
    );
}

#[test]
fn a_bad_policy_points_at_the_field() {
    let files = MemFiles::new()
        .with("/etc/tg/toolgate.toml", "[policies]\np = \"p.json\"\n")
        .with("/etc/tg/p.json", r#"{"version":"1","default":"sometimes"}"#);
    let all = errors(&files);
    assert!(
        all.starts_with("policies.p (`/etc/tg/p.json`) /default"),
        "{all}"
    );
}

#[test]
fn every_error_with_its_path() {
    let files = MemFiles::new()
        .with("/etc/tg/p.json", r#"{"version":"1","default":"sometimes"}"#)
        .with("/etc/tg/toolgate.toml", "listen = \"nowhere\"\nmax_body = \"lots\"\nupstream_timeout = \"11m\"\nbody_timeout = \"forever\"\nstore = \"mysql://x\"\n[policies]\np = \"p.json\"\nq = \"missing.json\"\n[[servers]]\nname = \"a b\"\nurl = \"ftp://x\"\n[[servers]]\nname = \"c\"\n[[servers]]\nname = \"d\"\ncommand = \"x\"\npolicy = \"zz\"\n");
    let all = errors(&files);
    for needle in [
        "listen:",
        "max_body:",
        "upstream_timeout: 660 s is above the hard maximum of 600 s",
        "body_timeout: expected a duration",
        "store: expected \"sqlite://PATH\"",
        "policies.p",
        "/default",
        "policies.q: cannot read",
        "servers[0].name",
        "servers[0].url",
        "servers[1]: missing `url`",
        "servers[2].policy: no policy named `zz`",
    ] {
        assert!(all.contains(needle), "missing {needle} in:\n{all}");
    }
}

#[test]
fn unknown_keys_are_refused() {
    let files = MemFiles::new().with(
        "/etc/tg/toolgate.toml",
        "[[servers]]\nname = \"a\"\nurll = \"http://x\"\n",
    );
    let e = load(&files).unwrap_err();
    assert!(e.errors[0].contains("unknown field `urll`"), "{e}");
}

#[test]
fn a_redis_store_keeps_the_audit_log_beside_the_config() {
    let files = MemFiles::new().with(
        "/etc/tg/toolgate.toml",
        "store = \"redis://127.0.0.1:6379/3\"\n",
    );
    let c = load(&files).unwrap();
    assert_eq!(c.store, StoreUrl::Redis("redis://127.0.0.1:6379/3".into()));
    assert_eq!(c.audit.location(), "/etc/tg/toolgate-audit.db");
}

#[test]
fn backends_and_their_errors() {
    let files = MemFiles::new().with(
        "/etc/tg/toolgate.toml",
        "store = \"sqlite:///var/tg/state.db\"\n[audit]\nstore = \"postgres://tg:hunter2@db/audit\"\n",
    );
    let c = load(&files).unwrap();
    assert_eq!(
        c.audit.store,
        AuditStore::Postgres("postgres://tg:hunter2@db/audit".into())
    );
    assert_eq!(c.audit.location(), "postgres://tg:…@db/audit");
    let files = MemFiles::new().with(
        "/etc/tg/toolgate.toml",
        "counters = \"memcached://x\"\n[audit]\nstore = \"mysql://u:hunter2@x\"\nsync = \"sometimes\"\n",
    );
    let all = errors(&files);
    assert!(
        all.contains("counters: expected \"redis://HOST:PORT/DB\""),
        "{all}"
    );
    assert!(
        all.contains(
            "audit.store: expected \"postgres://USER@HOST:PORT/DB\", got \"mysql://u:…@x\""
        ),
        "{all}"
    );
    assert!(all.contains("audit.sync: expected \"batched\""), "{all}");
    assert!(!all.contains("hunter2"), "{all}");
}

fn run_server(name: &str, policy: &str) -> toolgate_config::RunServer {
    toolgate_config::RunServer {
        name: name.into(),
        policy_file: policy.into(),
        command: "./server.sh".into(),
        args: vec!["--x".into()],
        cwd: "/home/a".into(),
    }
}

#[test]
fn run_builds_its_one_server_through_the_validator() {
    let files = MemFiles::new()
        .with(
            "/etc/tg/toolgate.toml",
            "[[servers]]\nname = \"mem\"\ncommand = \"x\"\npinning = \"warn\"\naudit_arguments = \"full\"\n[[servers]]\nname = \"other\"\nurl = \"http://127.0.0.1:9/mcp\"\n",
        )
        .with("/home/a/p.json", r#"{"version":"1","default":"allow"}"#);
    let c = load(&files)
        .unwrap()
        .for_run(run_server("mem", "/home/a/p.json"), &files)
        .unwrap();
    assert_eq!(c.servers.len(), 1);
    let s = &c.servers[0];
    assert_eq!(s.policy.as_deref(), Some("run-mem"));
    assert_eq!(s.pinning, toolgate_config::Pinning::Warn);
    assert_eq!(s.audit_arguments, toolgate_audit::ArgumentsMode::Full);
    assert_eq!(
        s.transport,
        Transport::Stdio {
            command: "/home/a/./server.sh".into(),
            args: vec!["--x".into()],
            env: vec![],
            cwd: "/home/a".into()
        }
    );
    assert!(c.policies.contains_key("run-mem"));
    assert_eq!(c.policy_versions["run-mem"].len(), 16);
}

#[test]
fn run_refuses_a_bad_name_and_a_bad_or_missing_policy() {
    let files = MemFiles::new()
        .with("/etc/tg/toolgate.toml", "")
        .with("/p.json", r#"{"version":"1","default":"allow"}"#)
        .with("/bad.json", r#"{"version":"1","default":"sometimes"}"#);
    let c = load(&files).unwrap();
    let e = c
        .clone()
        .for_run(run_server("a b", "/p.json"), &files)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "--name: use letters, digits, '-' and '_' (got \"a b\")"
    );
    let e = c
        .clone()
        .for_run(run_server("s", "/none.json"), &files)
        .unwrap_err();
    assert_eq!(e.to_string(), "cannot read the policy `/none.json`");
    let e = c.for_run(run_server("s", "/bad.json"), &files).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the policy `/bad.json` is invalid; toolgate does not start without a valid policy"
    );
    let toolgate_config::RunError::Invalid { errors, .. } = e else {
        panic!("{e}")
    };
    assert!(errors[0].starts_with("/default"), "{errors:?}");
}

/// A virtual server redacts what any server it includes redacts, exempts nothing from
/// secret detection, and sanitises when one of them does; its tools map both ways.
#[test]
fn a_virtual_server_takes_the_strictest_of_its_servers() {
    let toml = "[policies]\np = \"p.json\"\n[[servers]]\nname = \"fs\"\ncommand = \"x\"\naudit_arguments = \"full\"\nredact = [\"args.token\"]\naudit_allow_secrets = [\"args.key\"]\nsanitize_descriptions = true\n[[servers]]\nname = \"web\"\nurl = \"http://127.0.0.1:9/mcp\"\nredact = [\"args.password\"]\n[[virtual_servers]]\nname = \"v\"\npolicy = \"p\"\n[[virtual_servers.include]]\nserver = \"fs\"\nprefix = \"fs_\"\n[[virtual_servers.include]]\nserver = \"web\"\ntools = [\"get\"]\nrename = { get = \"fetch\" }\n";
    let files = MemFiles::new()
        .with("/etc/tg/toolgate.toml", toml)
        .with("/etc/tg/p.json", r#"{"version":"1","default":"deny"}"#);
    let c = load(&files).unwrap();
    let v = c.server("v").unwrap();
    assert!(v.sanitize_descriptions);
    let out = v
        .redactor
        .redact(&serde_json::json!({"token": "t", "password": "p", "other": "o"}));
    assert_ne!(out["token"], "t");
    assert_ne!(out["password"], "p");
    assert_eq!(out["other"], "o");
    let Transport::Virtual { includes } = &v.transport else {
        panic!("not virtual")
    };
    assert_eq!(
        toolgate_config::virtual_server::route(includes, "fetch")
            .map(|(i, o)| (i.server.clone(), o)),
        Some(("web".into(), "get".into()))
    );
    assert_eq!(
        toolgate_config::virtual_server::route(includes, "fs_read")
            .map(|(i, o)| (i.server.clone(), o)),
        Some(("fs".into(), "read".into()))
    );
    assert!(toolgate_config::virtual_server::route(includes, "get").is_none());
}

#[test]
fn upstream_oauth_is_checked_field_by_field() {
    let policy = r#"{"version":"1","default":"deny"}"#;
    let with = |toml: &str| {
        MemFiles::new()
            .with("/etc/tg/toolgate.toml", toml)
            .with("/etc/tg/p.json", policy)
    };
    let server = "[policies]\np = \"p.json\"\n[[servers]]\nname = \"gh\"\nurl = \"https://gh.example/mcp\"\npolicy = \"p\"\n";
    // A good one: the key from a file beside the config, scopes kept.
    let good = format!("[oauth]\ntoken_key_file = \"key\"\npublic_url = \"https://gw.example/\"\n{server}auth = \"oauth\"\nscopes = [\"repo\"]\n");
    let c = load(&with(&good)).unwrap();
    let o = c.servers[0].oauth.as_ref().unwrap();
    assert_eq!(o.scopes, vec!["repo".to_string()]);
    let k = c.oauth.as_ref().unwrap();
    assert_eq!(
        k.token_key,
        toolgate_config::TokenKeySource::File("/etc/tg/key".into())
    );
    assert_eq!(k.public_url.as_deref(), Some("https://gw.example"));
    // Without [oauth]: the error names the field and how to make a key.
    let e = errors(&with(&format!("{server}auth = \"oauth\"\n")));
    assert!(
        e.contains("servers[0].auth") && e.contains("openssl rand -hex 32"),
        "{e}"
    );
    // A static Authorization header beside it.
    let e = errors(&with(&format!(
        "[oauth]\ntoken_key_env = \"K\"\n{server}auth = \"oauth\"\nheaders = {{ Authorization = \"Bearer x\" }}\n"
    )));
    assert!(e.contains("headers.Authorization"), "{e}");
    // Exchange without JWT identities, unknown, and keys that go with `auth` alone.
    let e = errors(&with(&format!("{server}auth = \"token_exchange\"\n")));
    assert!(
        e.contains("needs [auth.jwt]") && e.contains("needs an [oauth] table"),
        "{e}"
    );
    let e = errors(&with(&format!("{server}auth = \"basic\"\n")));
    assert!(e.contains("expected \"oauth\""), "{e}");
    let e = errors(&with(&format!("{server}scopes = [\"a\"]\n")));
    assert!(e.contains("servers[0].scopes"), "{e}");
    // The authorization server trusted: an issuer URL, kept; not a URL, named.
    let pinned = format!("{good}authorization_server = \"https://as.example\"\n");
    let c = load(&with(&pinned)).unwrap();
    assert_eq!(
        c.servers[0]
            .oauth
            .as_ref()
            .unwrap()
            .authorization_server
            .as_deref(),
        Some("https://as.example")
    );
    let e = errors(&with(&format!(
        "{good}authorization_server = \"as.example\"\n"
    )));
    assert!(e.contains("servers[0].authorization_server"), "{e}");
    // Both key sources, or neither.
    let e = errors(&with(&format!(
        "[oauth]\ntoken_key_env = \"K\"\ntoken_key_file = \"f\"\n{server}auth = \"oauth\"\n"
    )));
    assert!(
        e.contains("one of `token_key_file` or `token_key_env`"),
        "{e}"
    );
}
