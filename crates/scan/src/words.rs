//! Words: splitting names (`createCheckoutSession`, `create-checkout`,
//! `stripe.create_checkout` all give `create`, `checkout`, …), the verbs the classifier
//! knows with what each does on its own, and the nouns that change a verb's meaning.
//!
//! The lists hold the meaning of English verbs and nouns, not tool names: which verbs
//! read, which change state, which run something; which objects are billed, secret,
//! personal or shared with other people. [`crate::classify`] combines them with the
//! verb's object, the schema and the annotations.

/// The words of a name.
pub fn split_name(name: &str) -> Vec<String> {
    let mut words = vec![];
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// The lowercase words of free text.
pub fn text_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .flat_map(split_name)
        .collect()
}

/// What a verb does on its own, before its object and the schema are considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Reads, lists, searches, computes.
    Read,
    /// Creates or updates state, sends, applies declarative state.
    Write,
    /// Deletes, drops, revokes, kills.
    Destroy,
    /// Runs code, commands, queries or predefined jobs.
    Run,
    /// Moves money.
    Pay,
    /// Cancels or voids: Financial when the object is billed, else a recoverable change.
    Cancel,
    /// Loads a page or moves within it: a read.
    Navigate,
    /// Acts on a page as the user would (click, type, fill): a write.
    Input,
}

/// The verb a word is, if any (after stripping `-s`, `-es`, `-ing`, `-ed`).
pub fn verb(word: &str) -> Option<Verb> {
    lookup(word).or_else(|| {
        stems(word)
            .into_iter()
            .find_map(|s| lookup(&s).filter(|_| s.len() >= 3))
    })
}

fn stems(w: &str) -> Vec<String> {
    let mut out = vec![];
    if let Some(s) = w.strip_suffix("ies") {
        out.push(format!("{s}y"));
    }
    if let Some(s) = w.strip_suffix("ing") {
        out.push(s.to_string());
        out.push(format!("{s}e"));
    }
    if let Some(s) = w.strip_suffix("es") {
        out.push(s.to_string());
    }
    if let Some(s) = w.strip_suffix('s') {
        out.push(s.to_string());
    }
    if let Some(s) = w.strip_suffix("ed") {
        out.push(s.to_string());
        out.push(format!("{s}e"));
    }
    if let Some(s) = w.strip_suffix('d') {
        out.push(s.to_string());
    }
    // `running`, `cancelled`: a doubled final consonant.
    let doubled: Vec<String> = out
        .iter()
        .filter_map(|s| {
            let mut cs = s.chars().rev();
            match (cs.next(), cs.next()) {
                (Some(a), Some(b)) if a == b => {
                    Some(s.chars().take(s.chars().count() - 1).collect())
                }
                _ => None,
            }
        })
        .collect();
    out.extend(doubled);
    out
}

fn lookup(w: &str) -> Option<Verb> {
    let v = match w {
        "get" | "list" | "search" | "find" | "read" | "fetch" | "describe" | "show" | "view"
        | "count" | "check" | "lookup" | "inspect" | "retrieve" | "browse" | "explain"
        | "download" | "summarize" | "summarise" | "analyze" | "analyse" | "verify"
        | "validate" | "preview" | "resolve" | "geocode" | "estimate" | "calculate" | "compute"
        | "convert" | "diff" | "poll" | "monitor" | "watch" | "ask" | "extract" | "discover"
        | "introspect" | "scan" | "echo" | "trace" | "ping" | "compare" | "whoami" | "stat"
        | "exist" | "exists" | "snapshot" | "screenshot" | "wait" | "render" | "think"
        | "recommend" | "translate" | "format" | "parse" | "sum" | "identify" | "return"
        | "load" | "query" | "authenticate" | "login" | "test" | "audit" | "lint" | "diagnose"
        | "measure" | "export" | "print" | "look" | "report" | "display" | "provide" | "obtain"
        | "list_all" | "autocomplete" | "suggest" | "detect" | "evaluate_metric" | "match"
        | "filter" | "sort_by" | "collect" | "lookup_by" | "review_status" | "tail" | "grep"
        | "peek" | "probe" | "sample" | "reason" | "plan" | "examine" | "investigate"
        | "visualize" | "help" => Verb::Read,
        "create" | "add" | "update" | "set" | "edit" | "write" | "send" | "post" | "put"
        | "insert" | "upsert" | "move" | "rename" | "comment" | "push" | "merge" | "commit"
        | "label" | "assign" | "save" | "publish" | "reply" | "fork" | "invite" | "modify"
        | "patch" | "change" | "mark" | "append" | "upload" | "copy" | "tag" | "star" | "draft"
        | "schedule" | "reschedule" | "enable" | "disable" | "register" | "subscribe"
        | "unsubscribe" | "store" | "record" | "notify" | "share" | "unshare" | "open"
        | "close" | "review" | "approve" | "dismiss" | "lock" | "unlock" | "import" | "init"
        | "initialize" | "initialise" | "make" | "new" | "generate" | "resize" | "mkdir"
        | "stage" | "unstage" | "checkout" | "transition" | "attach" | "link" | "react" | "pin"
        | "unpin" | "apply" | "install" | "upgrade" | "downgrade" | "scale" | "rollout"
        | "rollback" | "deploy" | "redeploy" | "restart" | "start" | "stop" | "switch"
        | "toggle" | "play" | "pause" | "resume" | "skip" | "next" | "previous" | "seek"
        | "replace" | "duplicate" | "clone" | "freeze" | "trim" | "sort" | "connect"
        | "authorize" | "mint" | "vote" | "unsave" | "archive" | "unarchive" | "restore"
        | "sync" | "backup" | "dump" | "configure" | "protect" | "unprotect" | "transfer"
        | "forward" | "like" | "follow" | "unfollow" | "unstar" | "bookmark" | "favorite"
        | "favourite" | "accept" | "decline" | "reject" | "resolve_thread" | "complete"
        | "reopen" | "assign_to" | "build_index" | "reindex" | "refresh" | "reload" | "rebase"
        | "promote" | "demote" | "grant" | "mute" | "unmute" | "block" | "unblock" | "cordon"
        | "uncordon" | "drain" | "suspend" | "activate" | "deactivate" | "reactivate" | "renew"
        | "rotate" | "provision" | "allocate" | "reserve" | "book" | "queue" | "enqueue"
        | "order_by" | "respond" | "answer" | "remember" | "memorize" | "note" | "log_time"
        | "track" | "reply_all" | "broadcast" | "announce" | "tweet" | "retweet" | "repost"
        | "submit_review" | "plant" | "port" | "tunnel" | "expose" | "mount" | "unmount"
        | "attach_volume" | "set_up" | "setup" | "configure_all" => Verb::Write,
        "delete" | "remove" | "drop" | "destroy" | "purge" | "truncate" | "revoke" | "kill"
        | "terminate" | "wipe" | "erase" | "unlink" | "rm" | "rmdir" | "uninstall"
        | "deprovision" | "teardown" | "evict" | "deregister" | "unregister" | "clear"
        | "forget" | "unpublish" | "overwrite" | "rewrite" | "shred" | "nuke" | "reset"
        | "discard" | "expunge" | "prune" | "clean" | "cleanup" | "flush" | "ban" | "kick" => {
            Verb::Destroy
        }
        "run" | "execute" | "exec" | "eval" | "evaluate" | "invoke" | "trigger" | "shell"
        | "spawn" | "rerun" | "build" | "interact" | "call" | "sh" | "bash" | "repl" => Verb::Run,
        "pay" | "refund" | "charge" | "payout" | "purchase" | "buy" | "sell" | "withdraw"
        | "fund" | "topup" | "deposit" | "tip" | "donate" | "bill" | "finalize" | "capture"
        | "exchange" | "swap" | "trade" | "invest" | "bid" => Verb::Pay,
        "cancel" | "void" => Verb::Cancel,
        "navigate" | "goto" | "go" | "back" | "visit" | "scroll" => Verb::Navigate,
        "click" | "type" | "fill" | "select" | "press" | "hover" | "drag" | "drop_on"
        | "submit" | "handle" | "keypress" | "tap" | "swipe" | "focus" | "uncheck" => Verb::Input,
        _ => return None,
    };
    Some(v)
}

/// Objects whose creation, change or cancellation changes what someone is charged.
pub const BILLED: &[&str] = &[
    "payment",
    "payments",
    "invoice",
    "invoices",
    "refund",
    "refunds",
    "charge",
    "charges",
    "payout",
    "payouts",
    "subscription",
    "subscriptions",
    "order",
    "orders",
    "checkout",
    "dispute",
    "disputes",
    "transfer",
    "transfers",
    "purchase",
    "tab",
    "funds",
    "paymentintent",
    "intent",
    "plan",
    "plans",
    "booking",
    "trade",
];

/// Price-list objects: creating one is an ordinary write.
pub const PRICE_LIST: &[&str] = &[
    "price",
    "prices",
    "coupon",
    "coupons",
    "product",
    "products",
    "pricing",
    "discount",
    "promotion",
    "plan",
    "plans",
];

/// Words for money itself.
pub const MONEY: &[&str] = &[
    "money",
    "funds",
    "usdc",
    "usd",
    "btc",
    "bitcoin",
    "sats",
    "satoshis",
    "currency",
    "payment",
    "wallet",
    "crypto",
    "token_amount",
    "lamports",
    "eth",
];

/// Words naming who may do what.
pub const PERMISSION: &[&str] = &[
    "role",
    "roles",
    "permission",
    "permissions",
    "rbac",
    "acl",
    "policy",
    "policies",
    "intention",
    "intentions",
    "security",
    "member",
    "members",
    "membership",
    "collaborator",
    "collaborators",
    "firewall",
    "certificate",
    "sso",
    "mfa",
];

/// Words naming people's data.
pub const PERSONAL: &[&str] = &[
    "email",
    "emails",
    "mail",
    "message",
    "messages",
    "inbox",
    "conversation",
    "conversations",
    "threads",
    "sms",
    "chat",
    "customer",
    "customers",
    "contact",
    "contacts",
    "profile",
    "holdings",
    "positions",
    "margins",
    "balance",
    "balances",
    "transactions",
    "history",
    "invoices",
    "subscriptions",
    "revenue",
    "people",
    "person",
    "patients",
    "employees",
];

/// Words naming logs.
pub const LOGS: &[&str] = &["log", "logs"];

/// Words for things other people receive.
pub const MESSAGE: &[&str] = &[
    "email",
    "mail",
    "message",
    "messages",
    "sms",
    "text",
    "chat",
    "post",
    "comment",
    "reply",
    "tweet",
    "broadcast",
    "dm",
    "notification",
    "invite",
    "audio",
    "document",
    "contact",
    "interactive",
];

/// Words for things whose change reaches production.
pub const PRODUCTION: &[&str] = &[
    "deployment",
    "deployments",
    "deploy",
    "service",
    "services",
    "production",
    "prod",
    "site",
    "node",
    "nodes",
    "cluster",
    "route",
    "routes",
    "variables",
    "flag",
    "release",
    "container",
    "containers",
    "vm",
    "account",
    "main",
    "dns",
    "domain",
];

/// Words for small things whose deletion is limited in scope.
pub const SMALL: &[&str] = &[
    "comment",
    "comments",
    "note",
    "notes",
    "label",
    "labels",
    "event",
    "webhook",
    "template",
    "dashboard",
    "survey",
    "reaction",
    "emoji",
    "observation",
    "observations",
    "relation",
    "relations",
    "entity",
    "entities",
    "item",
    "items",
    "review",
    "draft",
    "filter",
    "key",
    "keys",
    "file",
    "snippet",
    "snippets",
    "account",
    "entry",
    "memory",
    "bookmark",
    "insight",
    "view",
    "views",
    "sheet",
    "range",
    "cell",
    "cells",
    "value",
    "values",
    "content",
    "container",
    "webhooks",
];

/// Words for large things whose deletion is unbounded.
pub const LARGE: &[&str] = &[
    "repository",
    "repo",
    "database",
    "db",
    "project",
    "projects",
    "namespace",
    "cluster",
    "organization",
    "org",
    "workspace",
    "all",
    "many",
    "batch",
    "bulk",
];

/// Words for trivial, reversible state.
pub const TRIVIAL: &[&str] = &[
    "star",
    "unstar",
    "label",
    "labels",
    "reaction",
    "vote",
    "save",
    "unsave",
    "read",
    "unread",
    "playback",
    "volume",
    "shuffle",
    "track",
    "position",
    "liked",
    "like",
    "bookmark",
    "pin",
    "freeze",
    "savepoint",
    "directory",
    "branch",
    "memory",
    "group",
    "toggle",
    "archive",
    "module",
    "insight",
    "fork",
];

/// True when any word is in `set`.
pub fn any_in(words: &[String], set: &[&str]) -> bool {
    words.iter().any(|w| set.contains(&w.as_str()))
}

/// The first word in `set`.
pub fn first_in<'a>(words: &'a [String], set: &[&str]) -> Option<&'a str> {
    words
        .iter()
        .find(|w| set.contains(&w.as_str()))
        .map(String::as_str)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn styles() {
        assert_eq!(
            split_name("createCheckoutSession"),
            ["create", "checkout", "session"]
        );
        assert_eq!(split_name("create-checkout"), ["create", "checkout"]);
        assert_eq!(
            split_name("stripe.create_refund"),
            ["stripe", "create", "refund"]
        );
        assert_eq!(
            split_name("browser_navigate_back"),
            ["browser", "navigate", "back"]
        );
        assert_eq!(split_name("HTTPGet"), ["httpget"]);
    }

    #[test]
    fn stems_find_verbs() {
        assert_eq!(verb("deletes"), Some(Verb::Destroy));
        assert_eq!(verb("running"), Some(Verb::Run));
        assert_eq!(verb("creates"), Some(Verb::Write));
        assert_eq!(verb("returns"), Some(Verb::Read));
        assert_eq!(verb("cancelled"), Some(Verb::Cancel));
        assert_eq!(verb("the"), None);
    }
}
