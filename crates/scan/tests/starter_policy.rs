//! The starter policy over every labelled server: what a cautious operator would sign.
//! Nothing above Read/Low is allowed outright, read-only tools are never sent to approval,
//! and file-writing siblings with the same effect annotations (readOnlyHint,
//! destructiveHint) get the same rule. And the
//! reference servers' categories, tool by tool.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

use std::path::Path;

use serde_json::{json, Value};
use toolgate_scan::{report, tools_from_list_result, Category, ServerReport, Severity, ToolDef};

fn servers() -> Vec<(String, Vec<ToolDef>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tools/labelled");
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
            (
                v["server"].as_str().unwrap().to_string(),
                tools_from_list_result(&v).unwrap(),
            )
        })
        .collect()
}

fn reports() -> Vec<(ServerReport, Vec<ToolDef>)> {
    servers()
        .into_iter()
        .map(|(s, tools)| (report(&s, &tools), tools))
        .collect()
}

#[test]
fn nothing_above_read_low_is_allowed_outright() {
    for (r, _) in reports() {
        for t in &r.tools {
            let a = &t.assessment;
            if t.recommended == json!({}) {
                assert!(
                    a.category == Category::Read && a.severity == Severity::Low,
                    "{} {} is {}/{} but allowed",
                    r.server,
                    a.name,
                    a.category.as_str(),
                    a.severity.as_str()
                );
            }
        }
    }
}

#[test]
fn read_only_tools_are_never_sent_to_approval() {
    for (r, defs) in reports() {
        for (t, d) in r.tools.iter().zip(&defs) {
            let approval = t.recommended["action"] == "require_approval";
            let read_only = t.assessment.category == Category::Read;
            assert!(
                !(approval && read_only),
                "{} {} reads but needs approval",
                r.server,
                t.assessment.name
            );
            if d.hint("readOnlyHint") == Some(true) && t.assessment.category == Category::Read {
                assert_ne!(t.recommended, json!("hide"));
            }
        }
    }
}

#[test]
fn file_writing_siblings_with_the_same_annotations_are_treated_alike() {
    let mut groups = 0;
    for (r, defs) in reports() {
        let key = |d: &ToolDef| {
            let props = d.input_schema["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let files = props.keys().any(|k| {
                let k = k.to_lowercase();
                k == "path" || k.ends_with("_path") || k == "source" || k == "destination"
            });
            let hints: Vec<Option<bool>> = ["readOnlyHint", "destructiveHint"]
                .iter()
                .map(|h| d.hint(h))
                .collect();
            (files
                && d.hint("destructiveHint") == Some(true)
                && d.hint("readOnlyHint") != Some(true))
            .then_some(hints)
        };
        for (i, (ti, di)) in r.tools.iter().zip(&defs).enumerate() {
            for (tj, dj) in r.tools.iter().zip(&defs).skip(i + 1) {
                let (Some(ki), Some(kj)) = (key(di), key(dj)) else {
                    continue;
                };
                if ki != kj || ti.assessment.signals.iter().any(|s| s.is_attack()) {
                    continue;
                }
                groups += 1;
                let shape = |v: &Value| {
                    v.to_string()
                        .replace(&ti.assessment.name, "T")
                        .replace(&tj.assessment.name, "T")
                };
                assert_eq!(
                    shape(&ti.recommended),
                    shape(&tj.recommended),
                    "{}: {} and {} write files with the same annotations",
                    r.server,
                    ti.assessment.name,
                    tj.assessment.name
                );
            }
        }
    }
    assert!(groups > 0);
}

/// What `toolgate scan` says of the reference servers: categories their authors would
/// recognise.
#[test]
fn reference_servers() {
    let want: &[(&str, &[(&str, Category)])] = &[
        (
            "filesystem",
            &[
                ("read_text_file", Category::Read),
                ("read_multiple_files", Category::Read),
                ("write_file", Category::Destructive),
                ("edit_file", Category::Write),
                ("create_directory", Category::Write),
                ("list_directory", Category::Read),
                ("directory_tree", Category::Read),
                ("move_file", Category::Write),
                ("search_files", Category::Read),
                ("get_file_info", Category::Read),
                ("list_allowed_directories", Category::Read),
            ],
        ),
        (
            "memory",
            &[
                ("create_entities", Category::Write),
                ("add_observations", Category::Write),
                ("delete_entities", Category::Destructive),
                ("read_graph", Category::Read),
                ("search_nodes", Category::Read),
            ],
        ),
        (
            "everything",
            &[
                ("echo", Category::Read),
                ("get-env", Category::Read),
                ("get-sum", Category::Read),
            ],
        ),
        (
            "git",
            &[
                ("git_status", Category::Read),
                ("git_diff", Category::Read),
                ("git_commit", Category::Write),
                ("git_add", Category::Write),
                ("git_reset", Category::Write),
                ("git_log", Category::Read),
                ("git_create_branch", Category::Write),
                ("git_checkout", Category::Write),
                ("git_show", Category::Read),
            ],
        ),
        ("fetch", &[("fetch", Category::Read)]),
    ];
    let all = reports();
    for (server, tools) in want {
        let (r, _) = all.iter().find(|(r, _)| r.server == *server).unwrap();
        for t in &r.tools {
            println!(
                "{server} {}: {} {} -> {}",
                t.assessment.name,
                t.assessment.category.as_str(),
                t.assessment.severity.as_str(),
                t.recommended
            );
        }
        for (name, cat) in *tools {
            let t = r.tools.iter().find(|t| t.assessment.name == *name).unwrap();
            assert_eq!(t.assessment.category, *cat, "{server} {name}");
        }
    }
    // The environment dump is not allowed outright.
    let (everything, _) = all.iter().find(|(r, _)| r.server == "everything").unwrap();
    let env = everything
        .tools
        .iter()
        .find(|t| t.assessment.name == "get-env")
        .unwrap();
    assert_eq!(env.assessment.severity, Severity::High);
    assert_ne!(env.recommended, json!({}));
}
