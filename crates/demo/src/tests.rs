//! End-to-end tests of the tool surface: an rmcp client talks to the server
//! over an in-process duplex pipe.

use std::sync::{Arc, Mutex};

use rmcp::model::{CallToolRequestParams, CallToolResult, ProgressNotificationParam};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{json, Value};

use crate::tools::DentalPractice;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A client that records the progress notifications it receives.
#[derive(Clone, Default)]
struct Recorder {
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let Ok(mut seen) = self.progress.lock() {
            seen.push(params);
        }
    }
}

async fn connect() -> Result<RunningService<RoleClient, Recorder>, Box<dyn std::error::Error>> {
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        if let Ok(running) = DentalPractice::seeded().serve(server_io).await {
            let _ = running.waiting().await;
        }
    });
    Ok(Recorder::default().serve(client_io).await?)
}

async fn call(
    client: &RunningService<RoleClient, Recorder>,
    tool: &'static str,
    args: Value,
) -> Result<CallToolResult, Box<dyn std::error::Error>> {
    let Value::Object(args) = args else {
        return Err("arguments must be an object".into());
    };
    Ok(client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(args))
        .await?)
}

/// The JSON a successful tool call answered with.
fn body(result: &CallToolResult) -> Result<Value, Box<dyn std::error::Error>> {
    assert_ne!(
        result.is_error,
        Some(true),
        "unexpected tool error: {result:?}"
    );
    let text = result
        .content
        .first()
        .and_then(|c| c.as_text())
        .ok_or("no text content")?;
    Ok(serde_json::from_str(&text.text)?)
}

fn error_text(result: &CallToolResult) -> String {
    assert_eq!(
        result.is_error,
        Some(true),
        "expected a tool error: {result:?}"
    );
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn lists_annotated_tools_with_schemas() -> TestResult {
    let client = connect().await?;
    let tools = client.list_all_tools().await?;
    assert!((20..=32).contains(&tools.len()), "{} tools", tools.len());
    assert_eq!(tools.len(), crate::tool_names().len());
    for tool in &tools {
        let a = tool.annotations.as_ref().ok_or("missing annotations")?;
        assert!(
            a.read_only_hint.is_some()
                && a.destructive_hint.is_some()
                && a.idempotent_hint.is_some()
                && a.open_world_hint.is_some()
                && a.title.is_some(),
            "incomplete annotations on {}",
            tool.name
        );
        assert!(
            tool.description.is_some(),
            "{} has no description",
            tool.name
        );
    }
    let find = |name: &str| tools.iter().find(|t| t.name == name);
    for name in [
        "list_patients",
        "get_patient",
        "search_patients",
        "get_treatment_plan",
        "list_appointments",
        "create_appointment",
        "reschedule_appointment",
        "cancel_appointment",
        "update_patient_contact",
        "delete_patient_record",
        "run_report_sql",
        "send_patient_email",
        "create_agent_checkout_session",
        "refund_payment",
        "list_invoices",
        "get_invoice",
        "add_clinical_note",
        "export_patient_data",
        "generate_monthly_report",
    ] {
        assert!(find(name).is_some(), "missing tool {name}");
    }

    let checkout = find("create_agent_checkout_session").ok_or("no checkout tool")?;
    let props = checkout
        .input_schema
        .get("properties")
        .and_then(Value::as_object)
        .ok_or("no properties")?;
    assert_eq!(props.len(), 13);
    assert_eq!(props["amount"]["type"], json!("integer"));
    assert_eq!(props["currency"]["type"], json!("string"));

    let delete = find("delete_patient_record").ok_or("no delete tool")?;
    let hints = delete.annotations.as_ref().ok_or("no annotations")?;
    assert_eq!(hints.destructive_hint, Some(true));
    assert_eq!(hints.read_only_hint, Some(false));
    let sql = find("run_report_sql").ok_or("no sql tool")?;
    assert_eq!(
        sql.annotations.as_ref().and_then(|a| a.read_only_hint),
        Some(true)
    );
    let email = find("send_patient_email").ok_or("no email tool")?;
    assert_eq!(
        email.annotations.as_ref().and_then(|a| a.open_world_hint),
        Some(true)
    );
    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn reads_records() -> TestResult {
    let client = connect().await?;
    let patient = body(&call(&client, "get_patient", json!({"patient_id": "pat_1001"})).await?)?;
    assert_eq!(patient["patient"]["last_name"], json!("Gonzalez"));
    let found = body(&call(&client, "search_patients", json!({"query": "raman"})).await?)?;
    assert_eq!(found["patients"][0]["id"], json!("pat_1003"));
    let plan = body(&call(&client, "get_treatment_plan", json!({"plan_id": "tp_3001"})).await?)?;
    assert_eq!(plan["treatment_plan"]["total_fee_cents"], json!(163_000));
    let sql = body(
        &call(
            &client,
            "run_report_sql",
            json!({"sql": "SELECT COUNT(*) FROM appointments WHERE status = 'scheduled'"}),
        )
        .await?,
    )?;
    assert_eq!(sql["rows"][0][0], json!(3));
    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn mutations_change_the_state() -> TestResult {
    let client = connect().await?;
    let created = body(
        &call(
            &client,
            "create_appointment",
            json!({"patient_id": "pat_1004", "provider_id": "prov_03",
                   "start": "2026-12-03T09:00", "duration_minutes": 45, "kind": "cleaning"}),
        )
        .await?,
    )?;
    let id = created["created"]["id"].as_str().ok_or("no id")?.to_owned();
    let listed = body(
        &call(
            &client,
            "list_appointments",
            json!({"patient_id": "pat_1004", "status": "scheduled"}),
        )
        .await?,
    )?;
    assert_eq!(listed["appointments"][0]["id"], json!(id));

    // The slot is now taken.
    let clash = call(
        &client,
        "create_appointment",
        json!({"patient_id": "pat_1001", "provider_id": "prov_03",
               "start": "2026-12-03T09:30", "duration_minutes": 30, "kind": "exam"}),
    )
    .await?;
    assert!(error_text(&clash).contains("overlapping"));

    body(
        &call(
            &client,
            "cancel_appointment",
            json!({"appointment_id": id, "reason": "patient_request"}),
        )
        .await?,
    )?;
    let again = call(
        &client,
        "cancel_appointment",
        json!({"appointment_id": id, "reason": "x"}),
    )
    .await?;
    assert!(error_text(&again).contains("cancelled"));

    let refund = body(
        &call(
            &client,
            "refund_payment",
            json!({"payment_id": "pay_5001", "amount": 5_000, "reason": "insurance_adjustment"}),
        )
        .await?,
    )?;
    assert_eq!(refund["remaining_refundable_cents"], json!(30_250));
    let invoice = body(&call(&client, "get_invoice", json!({"invoice_id": "inv_4001"})).await?)?;
    assert_eq!(invoice["invoice"]["status"], json!("partially_paid"));

    body(
        &call(
            &client,
            "delete_patient_record",
            json!({"patient_id": "pat_1003", "reason": "test"}),
        )
        .await?,
    )?;
    let gone = call(&client, "get_patient", json!({"patient_id": "pat_1003"})).await?;
    assert!(error_text(&gone).contains("pat_1003"));
    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn checkout_sessions_validate_and_replay() -> TestResult {
    let client = connect().await?;
    let args = json!({
        "patient_id": "pat_1001", "amount": 67_500, "currency": "usd",
        "description": "Crown #19, patient portion",
        "line_items": [{"description": "Crown #19", "amount": 67_500, "cdt_code": "D2740"}],
        "success_url": "https://brightsmile.example/paid", "cancel_url": "https://brightsmile.example/cancel",
        "payment_method_types": ["card", "hsa_card"], "metadata": {"source": "agent"},
        "expires_in_minutes": 120, "treatment_plan_id": "tp_3001", "idempotency_key": "k-1",
    });
    let first = body(&call(&client, "create_agent_checkout_session", args.clone()).await?)?;
    let second = body(&call(&client, "create_agent_checkout_session", args).await?)?;
    assert_eq!(
        first["checkout_session"]["id"],
        second["checkout_session"]["id"]
    );
    assert_eq!(second["replayed"], json!(true));
    let bad = call(
        &client,
        "create_agent_checkout_session",
        json!({"patient_id": "pat_1001", "amount": 100, "currency": "usd",
               "line_items": [{"description": "x", "amount": 99}],
               "success_url": "https://a.example/", "cancel_url": "https://a.example/"}),
    )
    .await?;
    assert!(error_text(&bad).contains("add up"));
    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn bad_input_is_a_tool_error() -> TestResult {
    let client = connect().await?;
    for (tool, args) in [
        ("get_patient", json!({"patient_id": "pat_0000"})),
        ("get_invoice", json!({"invoice_id": "inv_nope"})),
        (
            "reschedule_appointment",
            json!({"appointment_id": "apt_2004", "new_start": "tomorrow"}),
        ),
        (
            "send_patient_email",
            json!({"to": "not-an-address", "subject": "Hi", "body": "Hello"}),
        ),
        (
            "refund_payment",
            json!({"payment_id": "pay_5002", "amount": 1_000_000, "reason": "duplicate"}),
        ),
        ("run_report_sql", json!({"sql": "DELETE FROM patients"})),
        ("generate_monthly_report", json!({"month": "November"})),
    ] {
        let result = call(&client, tool, args).await?;
        assert!(
            !error_text(&result).is_empty(),
            "{tool} gave an empty error"
        );
    }
    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn monthly_report_sends_progress() -> TestResult {
    let client = connect().await?;
    let report = body(
        &call(
            &client,
            "generate_monthly_report",
            json!({"month": "2026-11"}),
        )
        .await?,
    )?;
    assert_eq!(report["sections"]["appointments"]["completed"], json!(2));
    assert_eq!(
        report["sections"]["collections"]["received_cents"],
        json!(44_850)
    );
    let seen: Vec<(f64, Option<f64>)> = client
        .service()
        .progress
        .lock()
        .map_err(|_| "poisoned")?
        .iter()
        .map(|p| (p.progress, p.total))
        .collect();
    assert_eq!(
        seen,
        (1..=5)
            .map(|i| (f64::from(i), Some(5.0)))
            .collect::<Vec<_>>()
    );
    client.cancel().await?;
    Ok(())
}
