//! One contract for every backend of the shared state (grants, admin tokens, pins,
//! approvals, policy history): SQLite (`SqliteStore`), memory (`MemoryState`, one handle
//! twice) and Redis (`RedisState`, against a
//! real server: `TOOLGATE_TEST_REDIS_URL`, which the test command sets after starting a
//! private `redis-server`; under `CI` its absence fails).
//!
//! Each test opens every backend twice, as two replicas (or the gateway and the CLI) would,
//! and checks that what one writes the other reads. Redis tests use one database number
//! each, flushed first, so tests running at once do not meet.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use toolgate_store::{
    open_state, ApprovalStatus, DecideError, GrantStatus, MemoryState, NewApproval, NewGrant,
    PolicyVersion, Role, StateStore, StoreError,
};

/// A backend's name and two handles on one fresh state.
type Backend = (&'static str, Arc<dyn StateStore>, Arc<dyn StateStore>);

fn backends(test: &str, db: u8) -> Vec<Backend> {
    let dir = std::env::temp_dir().join(format!("tg-state-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("s.db").display());
    let memory: Arc<dyn StateStore> = Arc::new(MemoryState::new());
    let mut out = vec![
        (
            "sqlite",
            open_state(&url, &dir).unwrap(),
            open_state(&url, &dir).unwrap(),
        ),
        ("memory", memory.clone(), memory),
    ];
    match std::env::var("TOOLGATE_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => {
            let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&url);
            let url = format!("{base}/{db}");
            let client = redis::Client::open(url.as_str()).unwrap();
            let mut c = client.get_connection().unwrap();
            redis::cmd("FLUSHDB").query::<()>(&mut c).unwrap();
            out.push((
                "redis",
                open_state(&url, &dir).unwrap(),
                open_state(&url, &dir).unwrap(),
            ));
        }
        _ if std::env::var_os("CI").is_some() => {
            panic!("TOOLGATE_TEST_REDIS_URL is not set: the test command starts redis-server and sets it")
        }
        _ => eprintln!(
            "note: TOOLGATE_TEST_REDIS_URL not set; the redis backend is not checked here"
        ),
    }
    out
}

fn new_grant(label: &str, server: &str, identity: Option<&str>, expires: Option<u64>) -> NewGrant {
    NewGrant {
        label: label.into(),
        server: server.into(),
        policy: Some("demo".into()),
        identity: identity.map(Into::into),
        expires_at_ms: expires,
    }
}

#[test]
fn grants_open_rotate_revoke_and_are_seen_by_the_other_handle() {
    for (name, s, other) in backends("grants", 11) {
        assert_eq!(s.grant_count().unwrap(), 0, "{name}");
        let v0 = other.data_version().unwrap();
        let (g, token) = s
            .create_grant(&new_grant("alice", "demo", None, Some(5_000)), 1_000)
            .unwrap();
        assert!(token.starts_with("tg_") && token.len() == 51, "{name}");
        assert_eq!(g.identity, "alice", "{name}");
        assert_ne!(
            other.data_version().unwrap(),
            v0,
            "{name}: a change is seen"
        );
        let found = other.grant_by_token(&token).unwrap().unwrap();
        assert_eq!(found, g, "{name}");
        assert_eq!(found.status(4_999), GrantStatus::Active, "{name}");
        assert_eq!(found.status(5_000), GrantStatus::Expired, "{name}");
        assert!(
            other.grant_by_token("tg_wrong").unwrap().is_none(),
            "{name}"
        );
        assert_eq!(other.grant(&g.id).unwrap(), g, "{name}");
        assert!(
            matches!(other.grant("g_nope"), Err(StoreError::NotFound(_))),
            "{name}"
        );

        let (rotated, token2) = s.rotate_grant(&g.id).unwrap();
        assert_ne!(rotated.token_prefix, g.token_prefix, "{name}");
        assert!(
            other.grant_by_token(&token).unwrap().is_none(),
            "{name}: old token"
        );
        assert_eq!(
            other.grant_by_token(&token2).unwrap().unwrap().id,
            g.id,
            "{name}"
        );
        assert!(
            matches!(s.rotate_grant("g_nope"), Err(StoreError::NotFound(_))),
            "{name}"
        );

        let r = s.revoke_grant(&g.id, 2_000).unwrap();
        assert_eq!(r.status(2_000), GrantStatus::Revoked, "{name}");
        assert_eq!(
            s.revoke_grant(&g.id, 3_000).unwrap().revoked_at_ms,
            Some(2_000),
            "{name}: first time kept"
        );
        assert_eq!(
            other
                .grant_by_token(&token2)
                .unwrap()
                .unwrap()
                .status(2_500),
            GrantStatus::Revoked,
            "{name}"
        );
        assert!(
            matches!(s.revoke_grant("g_nope", 1), Err(StoreError::NotFound(_))),
            "{name}"
        );

        let (b, _) = s
            .create_grant(&new_grant("bob", "demo", None, None), 1_500)
            .unwrap();
        let ids: Vec<String> = other
            .list_grants()
            .unwrap()
            .into_iter()
            .map(|g| g.id)
            .collect();
        assert_eq!(ids, [g.id.clone(), b.id.clone()], "{name}: oldest first");
        assert_eq!(other.grant_count().unwrap(), 2, "{name}");
    }
}

#[test]
fn identities_find_their_newest_active_grant_on_that_server() {
    for (name, s, other) in backends("identity", 12) {
        assert!(
            other
                .grant_for_identity("demo", "ci", 10)
                .unwrap()
                .is_none(),
            "{name}"
        );
        let (old, _) = s
            .create_grant(&new_grant("ci-1", "demo", Some("ci"), None), 1)
            .unwrap();
        let (new, _) = s
            .create_grant(&new_grant("ci-2", "demo", Some("ci"), None), 2)
            .unwrap();
        s.create_grant(&new_grant("ci-3", "other", Some("ci"), None), 3)
            .unwrap();
        let (_, _) = s
            .create_grant(&new_grant("ci-4", "demo", Some("ci"), Some(50)), 4)
            .unwrap();
        assert_eq!(
            other
                .grant_for_identity("demo", "ci", 100)
                .unwrap()
                .unwrap()
                .id,
            new.id,
            "{name}"
        );
        s.revoke_grant(&new.id, 101).unwrap();
        assert_eq!(
            other
                .grant_for_identity("demo", "ci", 102)
                .unwrap()
                .unwrap()
                .id,
            old.id,
            "{name}"
        );
        assert!(
            other
                .grant_for_identity("demo", "nobody", 102)
                .unwrap()
                .is_none(),
            "{name}"
        );
    }
}

#[test]
fn admin_tokens_open_until_revoked() {
    for (name, s, other) in backends("admin", 13) {
        let (t, token) = s.create_admin_token("ops", Role::PolicyManager, 1).unwrap();
        assert!(token.starts_with("tga_"), "{name}");
        assert_eq!(
            other.admin_by_token(&token).unwrap().unwrap().role,
            Role::PolicyManager,
            "{name}"
        );
        assert!(
            other.admin_by_token("tga_nope").unwrap().is_none(),
            "{name}"
        );
        let (_, _) = s.create_admin_token("root", Role::Admin, 2).unwrap();
        let names: Vec<String> = other
            .admin_tokens()
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["ops", "root"], "{name}");
        other.revoke_admin_token(&t.id, 3).unwrap();
        assert!(s.admin_by_token(&token).unwrap().is_none(), "{name}");
        assert!(
            matches!(
                s.revoke_admin_token("at_nope", 4),
                Err(StoreError::NotFound(_))
            ),
            "{name}"
        );
    }
}

fn tools(defs: &[(&str, &str)]) -> Vec<(String, String, String)> {
    defs.iter()
        .map(|(t, h)| {
            (
                t.to_string(),
                h.to_string(),
                format!("{{\"name\":\"{t}\",\"v\":\"{h}\"}}"),
            )
        })
        .collect()
}

#[test]
fn capability_sets_are_new_once_per_server() {
    for (name, s, other) in backends("pincaps", 20) {
        assert!(s.observe_capabilities("demo", "", 1).unwrap(), "{name}");
        assert!(
            !other.observe_capabilities("demo", "", 2).unwrap(),
            "{name}: seen by any handle"
        );
        assert!(
            other.observe_capabilities("demo", "sampling", 3).unwrap(),
            "{name}"
        );
        assert!(
            !s.observe_capabilities("demo", "sampling", 4).unwrap(),
            "{name}"
        );
        assert!(
            s.observe_capabilities("other", "sampling", 5).unwrap(),
            "{name}: per server"
        );
    }
}

#[test]
fn pins_hold_changed_and_new_tools_until_approved() {
    for (name, s, other) in backends("pins", 14) {
        let first = s
            .observe_tools("demo", &tools(&[("b", "h1"), ("a", "h2")]), 10)
            .unwrap();
        assert!(
            first.changed.is_empty(),
            "{name}: first sight pins everything"
        );
        assert_eq!(
            first
                .pins
                .iter()
                .map(|p| (p.tool.as_str(), p.hash.as_deref()))
                .collect::<Vec<_>>(),
            [("b", Some("h1")), ("a", Some("h2"))],
            "{name}: in the order listed"
        );
        assert_eq!(first.pins[0].pinned_at_ms, Some(10), "{name}");
        assert!(!other.is_held("demo", "a").unwrap(), "{name}");

        let v = other.data_version().unwrap();
        let second = s
            .observe_tools(
                "demo",
                &tools(&[("a", "h2x"), ("b", "h1"), ("c", "h3")]),
                20,
            )
            .unwrap();
        assert_ne!(
            other.data_version().unwrap(),
            v,
            "{name}: pin changes are seen"
        );
        assert_eq!(
            second.changed,
            [
                (
                    "a".to_string(),
                    "definition changed: pinned h2, now h2x".to_string()
                ),
                ("c".to_string(), "new since pinning".to_string()),
            ],
            "{name}"
        );
        assert!(
            other.is_held("demo", "a").unwrap() && other.is_held("demo", "c").unwrap(),
            "{name}"
        );
        assert!(!other.is_held("demo", "b").unwrap(), "{name}");
        assert!(!other.is_held("elsewhere", "a").unwrap(), "{name}");
        let a = &second.pins[0];
        assert_eq!(
            (a.hash.as_deref(), a.pending_hash.as_deref()),
            (Some("h2"), Some("h2x")),
            "{name}"
        );
        assert!(
            a.pending_definition.as_deref().unwrap().contains("h2x"),
            "{name}"
        );

        // Seen again unchanged: nothing new is reported.
        let third = s
            .observe_tools("demo", &tools(&[("a", "h2x")]), 30)
            .unwrap();
        assert!(third.changed.is_empty(), "{name}");

        let approved = other.approve_pin("demo", "a", 40).unwrap();
        assert_eq!(
            (approved.hash.as_deref(), approved.pending_hash),
            (Some("h2x"), None),
            "{name}"
        );
        assert_eq!(approved.pinned_at_ms, Some(40), "{name}");
        assert!(!s.is_held("demo", "a").unwrap(), "{name}");
        assert!(
            matches!(
                other.approve_pin("demo", "a", 41),
                Err(StoreError::NotFound(_))
            ),
            "{name}"
        );

        // Back to the pinned definition: the pending change is dropped.
        s.observe_tools("demo", &tools(&[("a", "h2x"), ("c", "h3")]), 50)
            .unwrap();
        let c = other.approve_pin("demo", "c", 60).unwrap();
        assert_eq!(c.hash.as_deref(), Some("h3"), "{name}");
        s.observe_tools("demo", &tools(&[("b", "h1-changed")]), 70)
            .unwrap();
        assert!(other.is_held("demo", "b").unwrap(), "{name}");
        s.observe_tools("demo", &tools(&[("b", "h1")]), 80).unwrap();
        assert!(!other.is_held("demo", "b").unwrap(), "{name}: reverted");

        // A pin check is exact as of this handle's latest version read (the gateway reads
        // the version at the start of every request), even if it answered before.
        other.data_version().unwrap();
        assert!(!other.is_held("demo", "b").unwrap(), "{name}");
        s.observe_tools("demo", &tools(&[("b", "h1-again")]), 90)
            .unwrap();
        other.data_version().unwrap();
        assert!(
            other.is_held("demo", "b").unwrap(),
            "{name}: the change is seen"
        );
        s.observe_tools("demo", &tools(&[("b", "h1")]), 95).unwrap();
        other.data_version().unwrap();
        assert!(
            !other.is_held("demo", "b").unwrap(),
            "{name}: and its revert"
        );

        let all = other.pins("demo").unwrap();
        assert_eq!(
            all.iter().map(|p| p.tool.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"],
            "{name}"
        );
        assert!(other.pins("nothing").unwrap().is_empty(), "{name}");
    }
}

fn new_approval(required: u32, hash: &str) -> NewApproval {
    NewApproval {
        server: "demo".into(),
        grant_id: "g_1".into(),
        grant_label: "alice".into(),
        identity: "alice".into(),
        tool: "refund".into(),
        arguments: "{\"amount\":1}".into(),
        arg_hash: hash.into(),
        policy: Some("p".into()),
        policy_version: None,
        rule: "/tools/refund/action".into(),
        required,
        timeout_ms: 60_000,
    }
}

#[test]
fn an_approval_is_used_once_for_the_same_arguments() {
    for (name, s, other) in backends("approve-once", 15) {
        let (a, created) = s.request_approval(&new_approval(1, "h1"), 1000).unwrap();
        assert!(created, "{name}");
        assert_eq!(
            (a.status, a.expires_at_ms),
            (ApprovalStatus::Opening, 61_000),
            "{name}"
        );
        assert_eq!(a.policy.as_deref(), Some("p"), "{name}");
        assert!(
            other.approve(&a.id, "bob", 1500).unwrap().is_err(),
            "{name}: not while opening"
        );
        assert!(
            other.approvals(true, 1500).unwrap().is_empty(),
            "{name}: hidden while opening"
        );
        s.open_approval(&a.id).unwrap();
        assert_eq!(other.approvals(true, 1500).unwrap().len(), 1, "{name}");
        let (again, created) = other
            .request_approval(&new_approval(1, "h1"), 2000)
            .unwrap();
        assert_eq!(
            (again.id.as_str(), created),
            (a.id.as_str(), false),
            "{name}: a retry waits on the same"
        );
        assert!(
            s.take_approved("g_1", "refund", "h1", None, 2000)
                .unwrap()
                .is_none(),
            "{name}"
        );
        let ok = other.approve(&a.id, "bob", 3000).unwrap().unwrap();
        assert_eq!(
            (ok.status, ok.approvers.clone()),
            (ApprovalStatus::Approved, vec!["bob".to_string()]),
            "{name}"
        );
        assert_eq!(
            (ok.decided_by.as_deref(), ok.expires_at_ms),
            (Some("bob"), 63_000),
            "{name}"
        );
        assert!(
            other.approvals(true, 3000).unwrap().is_empty(),
            "{name}: no longer waiting"
        );
        assert!(
            s.take_approved("g_1", "refund", "h2", None, 4000)
                .unwrap()
                .is_none(),
            "{name}: other arguments"
        );
        assert!(
            s.take_approved("g_1", "refund", "h1", Some("ap_other"), 4000)
                .unwrap()
                .is_none(),
            "{name}: other id"
        );
        let used = s
            .take_approved("g_1", "refund", "h1", Some(&a.id), 4000)
            .unwrap()
            .unwrap();
        assert_eq!(
            (used.status, used.used_at_ms),
            (ApprovalStatus::Used, Some(4000)),
            "{name}"
        );
        assert!(
            other
                .take_approved("g_1", "refund", "h1", None, 4001)
                .unwrap()
                .is_none(),
            "{name}: once"
        );
        assert_eq!(
            other.approval(&a.id).unwrap().status,
            ApprovalStatus::Used,
            "{name}"
        );
        assert!(
            matches!(other.approval("ap_nope"), Err(StoreError::NotFound(_))),
            "{name}"
        );
        let all = other.approvals(false, 5000).unwrap();
        assert_eq!(
            all.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            [a.id.as_str()],
            "{name}"
        );
    }
}

#[test]
fn two_distinct_approvers_deny_and_expiry() {
    for (name, s, other) in backends("approve-two", 16) {
        let (a, _) = s.request_approval(&new_approval(2, "h"), 0).unwrap();
        s.open_approval(&a.id).unwrap();
        assert_eq!(
            other.approve(&a.id, "bob", 10).unwrap().unwrap().status,
            ApprovalStatus::Pending,
            "{name}"
        );
        assert!(
            matches!(
                s.approve(&a.id, "bob", 11).unwrap(),
                Err(DecideError::AlreadyApproved { required: 2, .. })
            ),
            "{name}"
        );
        let done = s.approve(&a.id, "carol", 12).unwrap().unwrap();
        assert_eq!(
            (done.status, done.approvers.clone()),
            (
                ApprovalStatus::Approved,
                vec!["bob".to_string(), "carol".to_string()]
            ),
            "{name}"
        );
        assert!(
            matches!(
                other.approve(&a.id, "dave", 13).unwrap(),
                Err(DecideError::NotPending {
                    status: "approved",
                    ..
                })
            ),
            "{name}"
        );

        let (b, _) = s.request_approval(&new_approval(1, "x"), 0).unwrap();
        s.open_approval(&b.id).unwrap();
        let denied = other.deny_approval(&b.id, "bob", "no", 5).unwrap().unwrap();
        assert_eq!(
            (
                denied.status,
                denied.reason.as_deref(),
                denied.decided_by.as_deref()
            ),
            (ApprovalStatus::Denied, Some("no"), Some("bob")),
            "{name}"
        );
        assert!(
            matches!(
                s.approve(&b.id, "carol", 6).unwrap(),
                Err(DecideError::NotPending {
                    status: "denied",
                    ..
                })
            ),
            "{name}"
        );
        assert!(
            matches!(
                s.deny_approval(&b.id, "carol", "again", 6).unwrap(),
                Err(DecideError::NotPending { .. })
            ),
            "{name}"
        );
        assert!(
            matches!(
                s.deny_approval("ap_nope", "carol", "x", 6).unwrap(),
                Err(DecideError::NotFound(_))
            ),
            "{name}"
        );
        assert!(
            matches!(
                s.approve("ap_nope", "carol", 6).unwrap(),
                Err(DecideError::NotFound(_))
            ),
            "{name}"
        );

        let (c, _) = s.request_approval(&new_approval(1, "y"), 0).unwrap();
        s.open_approval(&c.id).unwrap();
        assert!(
            matches!(
                other.approve(&c.id, "bob", 60_000).unwrap(),
                Err(DecideError::NotPending {
                    status: "expired",
                    ..
                })
            ),
            "{name}"
        );
        assert_eq!(
            s.approval(&c.id).unwrap().status,
            ApprovalStatus::Expired,
            "{name}: marked"
        );

        let (d, _) = s.request_approval(&new_approval(1, "z"), 100).unwrap();
        s.open_approval(&d.id).unwrap();
        assert!(other.expire_approval(&d.id, 200).unwrap(), "{name}");
        assert!(
            !other.expire_approval(&d.id, 201).unwrap(),
            "{name}: only once"
        );
        assert_eq!(
            s.approval(&d.id).unwrap().status,
            ApprovalStatus::Expired,
            "{name}"
        );
        assert!(s.approvals(true, 300).unwrap().is_empty(), "{name}");
        let newest: Vec<String> = s
            .approvals(false, 300)
            .unwrap()
            .into_iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(newest.first(), Some(&d.id), "{name}: newest first");
        assert_eq!(newest.len(), 4, "{name}");
    }
}

#[test]
fn concurrent_requests_make_one_approval_and_it_is_used_once() {
    for (name, s, other) in backends("approve-race", 17) {
        let handles = [s.clone(), other.clone()];
        let created: Vec<(String, bool)> = std::thread::scope(|scope| {
            let joins: Vec<_> = (0..16)
                .map(|i| {
                    let h = handles[i % 2].clone();
                    scope.spawn(move || {
                        let (a, created) =
                            h.request_approval(&new_approval(1, "race"), 1000).unwrap();
                        if created {
                            h.open_approval(&a.id).unwrap();
                        }
                        (a.id, created)
                    })
                })
                .collect();
            joins.into_iter().map(|j| j.join().unwrap()).collect()
        });
        // A request that came before the winner opened its approval may start another
        // (the first was not yet pending); every other request waits on an open one.
        let made: std::collections::BTreeSet<&String> = created
            .iter()
            .filter(|(_, c)| *c)
            .map(|(id, _)| id)
            .collect();
        assert!(!made.is_empty(), "{name}");
        for id in &made {
            other.approve(id, "bob", 2000).unwrap().unwrap();
        }
        let taken = std::thread::scope(|scope| {
            let joins: Vec<_> = (0..16)
                .map(|i| {
                    let h = handles[i % 2].clone();
                    scope.spawn(move || {
                        h.take_approved("g_1", "refund", "race", None, 3000)
                            .unwrap()
                            .is_some()
                    })
                })
                .collect();
            joins
                .into_iter()
                .map(|j| j.join().unwrap())
                .filter(|t| *t)
                .count()
        });
        assert_eq!(taken, made.len(), "{name}: each approval used exactly once");
    }
}

#[test]
fn policy_versions_are_kept_newest_first_and_never_overwritten() {
    for (name, s, other) in backends("policy", 18) {
        let v = |version: &str, author: &str, at: u64| PolicyVersion {
            name: "p".into(),
            version: version.into(),
            document: format!("{{\"v\":\"{version}\"}}"),
            author: author.into(),
            created_at_ms: at,
        };
        s.record_policy_version(&v("a", "(file)", 1)).unwrap();
        other.record_policy_version(&v("b", "max", 1)).unwrap();
        s.record_policy_version(&v("a", "eve", 3)).unwrap();
        let all = other.policy_versions("p").unwrap();
        assert_eq!(
            all.iter().map(|v| v.version.as_str()).collect::<Vec<_>>(),
            ["b", "a"],
            "{name}"
        );
        let a = other.policy_version("p", "a").unwrap();
        assert_eq!(
            (a.author.as_str(), a.created_at_ms, a.document.as_str()),
            ("(file)", 1, "{\"v\":\"a\"}"),
            "{name}"
        );
        assert!(
            matches!(s.policy_version("p", "zz"), Err(StoreError::NotFound(_))),
            "{name}"
        );
        assert!(s.policy_versions("q").unwrap().is_empty(), "{name}");
    }
}

#[test]
fn decisions_announced_through_one_handle_wake_watchers_of_the_other() {
    for (name, s, other) in backends("decisions", 19) {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let tx = std::sync::Mutex::new(tx);
        s.watch_decisions(Box::new(move |id| {
            let _ = tx.lock().unwrap().send(id.to_string());
        }));
        if name == "sqlite" {
            // SQLite publishes nothing: held calls poll (the gateway wakes its own).
            continue;
        }
        // The subscription is made by a thread: approve until one is heard.
        let mut made = vec![];
        let mut heard = None;
        for attempt in 0..50 {
            let (a, _) = other
                .request_approval(&new_approval(1, &format!("w{attempt}")), 0)
                .unwrap();
            other.open_approval(&a.id).unwrap();
            other.approve(&a.id, "bob", 1).unwrap().unwrap();
            other.announce_decided(&a.id);
            made.push(a.id);
            if let Ok(id) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
                heard = Some(id);
                break;
            }
        }
        let got = heard.unwrap_or_else(|| panic!("{name}: no decision was announced"));
        assert!(
            made.contains(&got),
            "{name}: only this database's decisions, got {got}"
        );
        // From now on every decision is heard (late echoes of the attempts are skipped).
        let hear = |want: &str| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while let Ok(id) =
                rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            {
                if id == want {
                    return true;
                }
                assert!(made.contains(&id), "{name}: unexpected {id}");
            }
            false
        };
        let (d, _) = other
            .request_approval(&new_approval(1, "deny-me"), 0)
            .unwrap();
        other.open_approval(&d.id).unwrap();
        other.deny_approval(&d.id, "bob", "no", 1).unwrap().unwrap();
        other.announce_decided(&d.id);
        assert!(hear(&d.id), "{name}: denials are announced too");
    }
}

#[test]
fn finished_approvals_leave_the_call_index() {
    for (name, s, other) in backends("call-index", 20) {
        for round in 0..6u64 {
            let (a, created) = s
                .request_approval(&new_approval(1, "again"), round * 10)
                .unwrap();
            assert!(created, "{name}: round {round} asks anew");
            s.open_approval(&a.id).unwrap();
            match round % 3 {
                0 => {
                    other
                        .deny_approval(&a.id, "bob", "no", round * 10 + 1)
                        .unwrap()
                        .unwrap();
                }
                1 => {
                    other
                        .approve(&a.id, "bob", round * 10 + 1)
                        .unwrap()
                        .unwrap();
                    let used = s
                        .take_approved("g_1", "refund", "again", None, round * 10 + 2)
                        .unwrap();
                    assert_eq!(used.map(|u| u.id), Some(a.id.clone()), "{name}");
                }
                _ => assert!(
                    other.expire_approval(&a.id, round * 10 + 1).unwrap(),
                    "{name}"
                ),
            }
        }
        if name == "redis" {
            // The index a held call walks keeps only approvals still in play.
            let url = std::env::var("TOOLGATE_TEST_REDIS_URL").unwrap();
            let url = format!("{}/20", url.rsplit_once('/').unwrap().0);
            let mut c = redis::Client::open(url.as_str())
                .unwrap()
                .get_connection()
                .unwrap();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("toolgate:ap-call:*")
                .query(&mut c)
                .unwrap();
            assert_eq!(keys.len(), 1, "{keys:?}");
            let (last, _) = s.request_approval(&new_approval(1, "again"), 100).unwrap();
            let members: Vec<String> = redis::cmd("ZRANGE")
                .arg(&keys[0])
                .arg(0)
                .arg(-1)
                .query(&mut c)
                .unwrap();
            assert_eq!(members, [last.id], "{name}: finished ones were dropped");
        }
    }
}

#[test]
fn the_version_read_in_place_never_outlives_a_change() {
    use std::time::{Duration, Instant};
    for (name, s, other) in backends("version", 21) {
        // Until it can answer in place (Redis: once subscribed to changes), ask the store.
        let deadline = Instant::now() + Duration::from_secs(5);
        let v0 = loop {
            let v = s.data_version().unwrap();
            if s.data_version_now() == Some(v) {
                break v;
            }
            assert!(Instant::now() < deadline, "{name}: never answered in place");
            std::thread::sleep(Duration::from_millis(20));
        };
        // Another process (here: another client) changes a grant.
        other
            .create_grant(&new_grant("v", "demo", None, None), 1)
            .unwrap();
        // The in-place answer stops being the old version as soon as the change is
        // announced (SQLite: at once; Redis: when the subscriber hears it).
        let deadline = Instant::now() + Duration::from_secs(2);
        while s.data_version_now() == Some(v0) {
            assert!(
                Instant::now() < deadline,
                "{name}: a change was not noticed"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let v1 = s.data_version().unwrap();
        assert_ne!(v1, v0, "{name}");
        // And it answers in place again, with the new version.
        let deadline = Instant::now() + Duration::from_secs(5);
        while s.data_version_now() != Some(v1) {
            assert!(
                Instant::now() < deadline,
                "{name}: did not settle on the new version"
            );
            s.data_version().unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        // A change made through this handle is never answered with the old version, not
        // even before the announcement comes back (Redis: the subscriber may not have
        // heard it yet).
        s.create_grant(&new_grant("w", "demo", None, None), 2)
            .unwrap();
        assert_ne!(s.data_version_now(), Some(v1), "{name}: its own change");
    }
}

#[test]
fn connections_pending_flows_and_registrations() {
    use toolgate_store::{Connection, PendingConnection};
    for (name, s, other) in backends("connections", 22) {
        let conn = |server: &str, identity: &str, sealed: &[u8], at: u64| Connection {
            server: server.into(),
            identity: identity.into(),
            sealed: sealed.to_vec(),
            subject: Some(identity.into()),
            client_id: "c1".into(),
            expires_at_ms: Some(at + 300_000),
            updated_at_ms: at,
        };
        // Every write of a connection moves the state version (gateways cache them).
        let v0 = other.data_version().unwrap();
        s.put_connection(&conn("gh", "bob", &[1, 2], 10)).unwrap();
        let v1 = other.data_version().unwrap();
        assert_ne!(v1, v0, "{name}: a new connection moves the version");
        s.put_connection(&conn("gh", "alice", &[3], 10)).unwrap();
        other
            .put_connection(&conn("gh", "alice", &[4, 0, 255], 20))
            .unwrap();
        let v2 = s.data_version().unwrap();
        assert_ne!(v2, v1, "{name}: a refreshed connection moves the version");
        let got = s.connection("gh", "alice").unwrap().unwrap();
        assert_eq!(
            (got.sealed, got.updated_at_ms),
            (vec![4, 0, 255], 20),
            "{name}"
        );
        assert_eq!(
            other
                .connections()
                .unwrap()
                .iter()
                .map(|c| c.identity.as_str())
                .collect::<Vec<_>>(),
            ["alice", "bob"],
            "{name}"
        );
        assert!(other.delete_connection("gh", "bob").unwrap(), "{name}");
        assert_ne!(
            s.data_version().unwrap(),
            v2,
            "{name}: a deleted connection moves the version"
        );
        assert!(!s.delete_connection("gh", "bob").unwrap(), "{name}");
        assert!(s.connection("gh", "bob").unwrap().is_none(), "{name}");

        let flow = |state: &str, identity: &str, at: u64| PendingConnection {
            state: state.into(),
            server: "gh".into(),
            identity: identity.into(),
            sealed: vec![9],
            created_at_ms: at,
        };
        s.begin_connection(&flow("s1", "alice", 1_000)).unwrap();
        // A second flow for the same identity replaces the first.
        s.begin_connection(&flow("s2", "alice", 2_000)).unwrap();
        s.begin_connection(&flow("s3", "bob", 2_000)).unwrap();
        assert!(other.take_pending("s1", 2_000).unwrap().is_none(), "{name}");
        let taken = other.take_pending("s2", 3_000).unwrap().unwrap();
        assert_eq!(
            (taken.identity.as_str(), taken.sealed),
            ("alice", vec![9]),
            "{name}"
        );
        // Taken once.
        assert!(s.take_pending("s2", 3_000).unwrap().is_none(), "{name}");
        // Past its time: taken, and not given.
        let late = 2_000 + toolgate_store::connections::PENDING_TTL_MS;
        assert!(s.take_pending("s3", late).unwrap().is_none(), "{name}");
        assert!(s.take_pending("s3", 3_000).unwrap().is_none(), "{name}");

        // A swap writes only over the row it expects: a refresh never brings back a
        // connection removed (or replaced) while it was under way.
        let first = conn("gh", "carol", &[1], 30);
        let refreshed = conn("gh", "carol", &[2], 40);
        assert!(
            !s.swap_connection(&first, Some(&refreshed)).unwrap(),
            "{name}: no row yet"
        );
        assert!(s.connection("gh", "carol").unwrap().is_none(), "{name}");
        s.put_connection(&first).unwrap();
        let v = other.data_version().unwrap();
        assert!(
            other.swap_connection(&first, Some(&refreshed)).unwrap(),
            "{name}"
        );
        assert_ne!(
            other.data_version().unwrap(),
            v,
            "{name}: a swap moves the version"
        );
        let got = s.connection("gh", "carol").unwrap().unwrap();
        assert_eq!((got.sealed, got.updated_at_ms), (vec![2], 40), "{name}");
        // The first refresh's twin, answered later, finds the row changed: nothing written.
        let stale = conn("gh", "carol", &[3], 50);
        assert!(!s.swap_connection(&first, Some(&stale)).unwrap(), "{name}");
        assert!(!s.swap_connection(&first, None).unwrap(), "{name}");
        assert_eq!(
            s.connection("gh", "carol").unwrap().unwrap().sealed,
            vec![2],
            "{name}"
        );
        // A conditional delete, of the row as it is.
        assert!(s.swap_connection(&refreshed, None).unwrap(), "{name}");
        assert!(other.connection("gh", "carol").unwrap().is_none(), "{name}");
        // A disconnect also ends the consent flow begun for that identity.
        s.put_connection(&first).unwrap();
        s.begin_connection(&flow("s4", "carol", 5_000)).unwrap();
        s.begin_connection(&flow("s5", "dave", 5_000)).unwrap();
        assert!(other.delete_connection("gh", "carol").unwrap(), "{name}");
        assert!(
            s.take_pending("s4", 5_001).unwrap().is_none(),
            "{name}: carol's flow is gone"
        );
        assert!(
            s.take_pending("s5", 5_001).unwrap().is_some(),
            "{name}: dave's is not"
        );

        s.put_registration("gh", "https://as", &[7, 7]).unwrap();
        assert_eq!(
            other.registration("gh", "https://as").unwrap(),
            Some(vec![7, 7]),
            "{name}"
        );
        assert_eq!(
            other.registration("gh", "https://other").unwrap(),
            None,
            "{name}"
        );

        // The refresh lock: one holder at a time, across handles; given back by its holder
        // only; taken again once given back.
        assert!(
            s.lock_refresh("gh", "alice", "r1", 1_000, 30_000).unwrap(),
            "{name}"
        );
        assert!(
            !other
                .lock_refresh("gh", "alice", "r2", 1_000, 30_000)
                .unwrap(),
            "{name}"
        );
        assert!(
            s.lock_refresh("gh", "alice", "r1", 1_000, 30_000).unwrap(),
            "{name}"
        );
        assert!(
            other
                .lock_refresh("gh", "bob", "r2", 1_000, 30_000)
                .unwrap(),
            "{name}"
        );
        other.unlock_refresh("gh", "alice", "r2").unwrap();
        assert!(
            !other
                .lock_refresh("gh", "alice", "r2", 1_000, 30_000)
                .unwrap(),
            "{name}"
        );
        s.unlock_refresh("gh", "alice", "r1").unwrap();
        assert!(
            other
                .lock_refresh("gh", "alice", "r2", 1_000, 30_000)
                .unwrap(),
            "{name}"
        );
        other.unlock_refresh("gh", "alice", "r2").unwrap();
        other.unlock_refresh("gh", "bob", "r2").unwrap();
    }
}
