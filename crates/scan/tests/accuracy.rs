//! The classifier against the labelled set in tests/fixtures/tools (real tool definitions
//! from public MCP servers): accuracy per category, the confusion matrix, and the rule that
//! no Execute, Financial or Destructive tool is called Read. And the attack signals
//! against poisoned tools and benign look-alikes: recall and false positives.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use toolgate_scan::{classify, tools_from_list_result, Category, ToolDef};

fn load(dir: &str) -> Vec<(String, Vec<(ToolDef, Value)>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/tools")
        .join(dir);
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
            let tools = tools_from_list_result(&v).unwrap();
            let labels: Vec<Value> = v["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["_label"].clone())
                .collect();
            (
                f.file_name().unwrap().to_string_lossy().into_owned(),
                tools.into_iter().zip(labels).collect(),
            )
        })
        .collect()
}

fn category(s: &str) -> Category {
    *Category::ALL.iter().find(|c| c.as_str() == s).unwrap()
}

#[test]
fn categories_of_real_tools() {
    let sets = load("labelled");
    let mut confusion: BTreeMap<(Category, Category), usize> = BTreeMap::new();
    let mut wrong = vec![];
    let mut dangerous_as_read = vec![];
    let mut flagged_real = vec![];
    for (file, tools) in &sets {
        let defs: Vec<ToolDef> = tools.iter().map(|(t, _)| t.clone()).collect();
        for (t, label) in tools {
            let want = category(label["category"].as_str().unwrap());
            let got = classify(t, &defs).category;
            *confusion.entry((want, got)).or_default() += 1;
            if want != got {
                wrong.push(format!(
                    "{file} {}: labelled {}, classified {}",
                    t.name,
                    want.as_str(),
                    got.as_str()
                ));
            }
            let a = classify(t, &defs);
            if a.signals.iter().any(|s| s.is_attack()) {
                flagged_real.push(format!("{file} {}", t.name));
            }
            if want >= Category::Execute && got == Category::Read {
                dangerous_as_read.push(format!("{file} {}", t.name));
            }
        }
    }
    let total: usize = confusion.values().sum();
    let right: usize = confusion
        .iter()
        .filter(|((a, b), _)| a == b)
        .map(|(_, n)| n)
        .sum();
    println!("confusion matrix (rows: label, columns: classified)");
    print!("{:>12}", "");
    for c in Category::ALL {
        print!("{:>12}", c.as_str());
    }
    println!("{:>10}", "recall");
    for a in Category::ALL {
        print!("{:>12}", a.as_str());
        let row: usize = Category::ALL
            .iter()
            .map(|b| confusion.get(&(a, *b)).copied().unwrap_or(0))
            .sum();
        for b in Category::ALL {
            print!("{:>12}", confusion.get(&(a, b)).copied().unwrap_or(0));
        }
        let hit = confusion.get(&(a, a)).copied().unwrap_or(0);
        println!("{:>9.1}%", 100.0 * hit as f64 / row.max(1) as f64);
    }
    println!(
        "accuracy: {right}/{total} = {:.1}%",
        100.0 * right as f64 / total as f64
    );
    for w in &wrong {
        println!("  {w}");
    }
    assert!(total >= 150, "the labelled set has {total} tools");
    assert!(
        dangerous_as_read.is_empty(),
        "dangerous tools classified Read: {dangerous_as_read:#?}"
    );
    let accuracy = right as f64 / total as f64;
    // The target is 95%; this floor keeps what has been reached from regressing.
    assert!(
        accuracy >= ACCURACY_FLOOR,
        "accuracy {:.1}% fell below {:.0}%",
        accuracy * 100.0,
        ACCURACY_FLOOR * 100.0
    );
}

const ACCURACY_FLOOR: f64 = 0.95;

#[test]
fn attack_signals_recall_and_false_positives() {
    let sets = load("poisoned");
    let (mut tp, mut fneg, mut fp, mut tn) = (0, 0, 0, 0);
    let mut missed = vec![];
    let mut false_alarms = vec![];
    for (file, tools) in &sets {
        let defs: Vec<ToolDef> = tools.iter().map(|(t, _)| t.clone()).collect();
        for (t, label) in tools {
            let a = classify(t, &defs);
            let flagged = a.signals.iter().any(|s| s.is_attack());
            let poisoned = label["poisoned"].as_bool().unwrap();
            match (poisoned, flagged) {
                (true, true) => tp += 1,
                (true, false) => {
                    fneg += 1;
                    missed.push(format!("{file} {}", t.name));
                }
                (false, true) => {
                    fp += 1;
                    false_alarms.push(format!(
                        "{file} {}: {:?}",
                        t.name,
                        a.signals
                            .iter()
                            .filter(|s| s.is_attack())
                            .map(|s| s.id)
                            .collect::<Vec<_>>()
                    ));
                }
                (false, false) => tn += 1,
            }
            if flagged {
                assert_eq!(
                    a.severity,
                    toolgate_scan::Severity::Critical,
                    "an attack signal makes the tool Critical"
                );
                assert!(a.signals[0].is_attack(), "attack signals are listed first");
            }
        }
    }
    println!(
        "poisoned: {tp} flagged, {fneg} missed (recall {:.1}%)",
        100.0 * tp as f64 / (tp + fneg).max(1) as f64
    );
    println!("benign look-alikes: {fp} flagged (false positives), {tn} clean");
    for m in &missed {
        println!("  missed: {m}");
    }
    for f in &false_alarms {
        println!("  false alarm: {f}");
    }
    assert!(tp + fneg >= 25 && fp + tn >= 25);
    // Floors at what has been reached (recall 100%, 5 of 56 look-alikes flagged), so it cannot regress.
    assert!(tp as f64 / (tp + fneg) as f64 >= 0.95, "attack recall fell");
    assert!(fp <= 5, "more false alarms on benign look-alikes: {fp}");
}
