//! The MCP face of the practice: one `#[tool]` per operation, with honest
//! annotations. Every tool answers with the JSON of its result as text; a
//! bad argument or unknown id gives a tool result with `isError: true`.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{CallToolResult, ContentBlock, ProgressNotificationParam, RequestMetaObject};
use rmcp::{tool, tool_handler, tool_router, Peer, RoleServer, ServerHandler};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::calendar;
use crate::data::{DomainError, Practice};
use crate::params as p;
use crate::reports::REPORT_STEPS;

/// Pause between the steps of `generate_monthly_report`, so progress is visible.
const REPORT_STEP_PAUSE: Duration = Duration::from_millis(50);

/// Turn an operation's outcome into a tool result.
fn reply<T: Serialize>(outcome: Result<T, DomainError>) -> CallToolResult {
    let text = outcome.map_err(|e| e.to_string()).and_then(|value| {
        serde_json::to_string_pretty(&value).map_err(|e| format!("cannot encode result: {e}"))
    });
    match text {
        Ok(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
        Err(message) => CallToolResult::error(vec![ContentBlock::text(message)]),
    }
}

/// The demo dental practice as an MCP server. Clones share one practice.
#[derive(Clone)]
pub(crate) struct DentalPractice {
    state: Arc<Mutex<Practice>>,
    tool_router: ToolRouter<Self>,
}

impl DentalPractice {
    /// A server over the given (possibly shared) practice.
    pub(crate) fn new(state: Arc<Mutex<Practice>>) -> Self {
        Self {
            state,
            tool_router: Self::tool_router(),
        }
    }

    /// A server over a freshly seeded practice of its own.
    pub(crate) fn seeded() -> Self {
        Self::new(Arc::new(Mutex::new(Practice::seeded())))
    }

    /// The names of all tools, sorted as `tools/list` returns them.
    pub(crate) fn tool_names(&self) -> Vec<String> {
        let tools = self.tool_router.list_all();
        tools.into_iter().map(|t| t.name.into_owned()).collect()
    }

    /// The practice's records; a panic in another holder does not lock them away.
    fn state(&self) -> MutexGuard<'_, Practice> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[tool_router]
impl DentalPractice {
    /// List the practice's patients (summaries), optionally filtered by status or primary provider.
    #[tool(annotations(
        title = "List patients",
        read_only_hint = true,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    fn list_patients(&self, Parameters(a): Parameters<p::ListPatients>) -> CallToolResult {
        reply(self.state().list_patients(&a))
    }

    /// Get a patient's full record: demographics, insurance, allergies, chart and upcoming visits.
    #[tool(annotations(
        title = "Get patient",
        read_only_hint = true,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    fn get_patient(&self, Parameters(a): Parameters<p::PatientRef>) -> CallToolResult {
        reply(self.state().get_patient(&a.patient_id))
    }

    /// Find patients by name, email, phone digits or date of birth.
    #[tool(annotations(
        title = "Search patients",
        read_only_hint = true,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    fn search_patients(&self, Parameters(a): Parameters<p::SearchPatients>) -> CallToolResult {
        reply(self.state().search_patients(&a))
    }

    /// Register a new patient with the practice.
    #[tool(annotations(
        title = "Create patient",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    fn create_patient(&self, Parameters(a): Parameters<p::CreatePatient>) -> CallToolResult {
        reply(self.state().create_patient(&a))
    }

    /// Change a patient's email, phone and/or postal address (the old values are overwritten).
    #[tool(annotations(
        title = "Update patient contact details",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    fn update_patient_contact(
        &self,
        Parameters(a): Parameters<p::UpdateContact>,
    ) -> CallToolResult {
        reply(self.state().update_patient_contact(&a))
    }

    /// Permanently erase a patient and every appointment, plan, note, invoice and payment of theirs.
    #[tool(annotations(
        title = "Delete patient record",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    fn delete_patient_record(&self, Parameters(a): Parameters<p::DeletePatient>) -> CallToolResult {
        reply(self.state().delete_patient_record(&a))
    }

    /// Export everything the practice holds about a patient as one JSON document (records request).
    #[tool(annotations(
        title = "Export patient data",
        read_only_hint = true,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    fn export_patient_data(&self, Parameters(a): Parameters<p::ExportPatient>) -> CallToolResult {
        reply(self.state().export_patient_data(&a))
    }

    /// List the dentists and hygienists who see patients.
    #[tool(annotations(
        title = "List providers",
        read_only_hint = true,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    fn list_providers(&self) -> CallToolResult {
        reply(self.state().list_providers())
    }

    /// List appointments, filtered by patient, provider, day or status.
    #[tool(annotations(
        title = "List appointments",
        read_only_hint = true,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    fn list_appointments(&self, Parameters(a): Parameters<p::ListAppointments>) -> CallToolResult {
        reply(self.state().list_appointments(&a))
    }

    /// Find free start times on a day, per provider, for a visit of the given length.
    #[tool(annotations(
        title = "Find available slots",
        read_only_hint = true,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    fn find_available_slots(&self, Parameters(a): Parameters<p::FindSlots>) -> CallToolResult {
        reply(self.state().find_available_slots(&a))
    }

    /// Book a new appointment; fails if the provider's chair is taken or the practice is closed.
    #[tool(annotations(
        title = "Create appointment",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    fn create_appointment(
        &self,
        Parameters(a): Parameters<p::CreateAppointment>,
    ) -> CallToolResult {
        reply(self.state().create_appointment(&a))
    }

    /// Move a scheduled appointment to a new start time (and optionally another provider).
    #[tool(annotations(
        title = "Reschedule appointment",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    fn reschedule_appointment(
        &self,
        Parameters(a): Parameters<p::RescheduleAppointment>,
    ) -> CallToolResult {
        reply(self.state().reschedule_appointment(&a))
    }

    /// Cancel a scheduled appointment and free its slot.
    #[tool(annotations(
        title = "Cancel appointment",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    fn cancel_appointment(
        &self,
        Parameters(a): Parameters<p::CancelAppointment>,
    ) -> CallToolResult {
        reply(self.state().cancel_appointment(&a))
    }

    /// Get a treatment plan by id, or every plan of a patient: procedures, CDT codes, fees and insurance estimates.
    #[tool(annotations(
        title = "Get treatment plan",
        read_only_hint = true,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    fn get_treatment_plan(&self, Parameters(a): Parameters<p::GetTreatmentPlan>) -> CallToolResult {
        reply(self.state().get_treatment_plan(&a))
    }

    /// Record that a treatment plan was accepted, started, completed or declined.
    #[tool(annotations(
        title = "Update treatment plan status",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    fn update_treatment_plan_status(
        &self,
        Parameters(a): Parameters<p::UpdatePlanStatus>,
    ) -> CallToolResult {
        reply(self.state().update_treatment_plan_status(&a))
    }

    /// Append a clinical note to a patient's chart.
    #[tool(annotations(
        title = "Add clinical note",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = false
    ))]
    fn add_clinical_note(&self, Parameters(a): Parameters<p::AddNote>) -> CallToolResult {
        reply(self.state().add_clinical_note(&a))
    }

    /// List a patient's clinical notes.
    #[tool(annotations(
        title = "List clinical notes",
        read_only_hint = true,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    fn list_clinical_notes(&self, Parameters(a): Parameters<p::PatientRef>) -> CallToolResult {
        reply(self.state().list_clinical_notes(&a.patient_id))
    }

    /// Get a patient's dental chart: per-tooth conditions and surfaces, plus allergies.
    #[tool(annotations(
        title = "Get dental chart",
        read_only_hint = true,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    fn get_dental_chart(&self, Parameters(a): Parameters<p::PatientRef>) -> CallToolResult {
        reply(self.state().get_dental_chart(&a.patient_id))
    }

    /// List invoices, filtered by patient or status.
    #[tool(annotations(
        title = "List invoices",
        read_only_hint = true,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    fn list_invoices(&self, Parameters(a): Parameters<p::ListInvoices>) -> CallToolResult {
        reply(self.state().list_invoices(&a))
    }

    /// Get one invoice with its lines, payments and balance due.
    #[tool(annotations(
        title = "Get invoice",
        read_only_hint = true,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    fn get_invoice(&self, Parameters(a): Parameters<p::InvoiceRef>) -> CallToolResult {
        reply(self.state().get_invoice(&a.invoice_id))
    }

    /// List payments received, filtered by patient or invoice.
    #[tool(annotations(
        title = "List payments",
        read_only_hint = true,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    fn list_payments(&self, Parameters(a): Parameters<p::ListPayments>) -> CallToolResult {
        reply(self.state().list_payments(&a))
    }

    /// Create a hosted checkout session with the payment processor and return its payment link.
    #[tool(annotations(
        title = "Create agent checkout session",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = true
    ))]
    fn create_agent_checkout_session(
        &self,
        Parameters(a): Parameters<p::CreateCheckout>,
    ) -> CallToolResult {
        reply(self.state().create_checkout(&a))
    }

    /// Refund all or part of a payment to the patient's original payment method.
    #[tool(annotations(
        title = "Refund payment",
        read_only_hint = false,
        destructive_hint = true,
        idempotent_hint = false,
        open_world_hint = true
    ))]
    fn refund_payment(&self, Parameters(a): Parameters<p::RefundPayment>) -> CallToolResult {
        reply(self.state().refund_payment(&a))
    }

    /// Ask the patient's insurance carrier about eligibility and, optionally, coverage of one procedure.
    #[tool(annotations(
        title = "Verify insurance eligibility",
        read_only_hint = true,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = true
    ))]
    fn verify_insurance_eligibility(
        &self,
        Parameters(a): Parameters<p::VerifyEligibility>,
    ) -> CallToolResult {
        reply(self.state().verify_insurance_eligibility(&a))
    }

    /// Send an email from the practice's address.
    #[tool(annotations(
        title = "Send patient email",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = true
    ))]
    fn send_patient_email(&self, Parameters(a): Parameters<p::SendEmail>) -> CallToolResult {
        reply(self.state().send_patient_email(&a))
    }

    /// Text or email the patient a reminder of a scheduled appointment.
    #[tool(annotations(
        title = "Send appointment reminder",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = false,
        open_world_hint = true
    ))]
    fn send_appointment_reminder(
        &self,
        Parameters(a): Parameters<p::SendReminder>,
    ) -> CallToolResult {
        reply(self.state().send_appointment_reminder(&a))
    }

    /// Run one read-only SQL SELECT against the practice database (COUNT(*), SUM(col), columns, WHERE ... AND, ORDER BY, LIMIT).
    #[tool(annotations(
        title = "Run report SQL",
        read_only_hint = true,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    fn run_report_sql(&self, Parameters(a): Parameters<p::RunSql>) -> CallToolResult {
        reply(self.state().run_report_sql(&a.sql))
    }

    /// Build the month-end practice report (appointments, production, collections, case acceptance, patients); reports progress.
    #[tool(annotations(
        title = "Generate monthly report",
        read_only_hint = true,
        destructive_hint = false,
        idempotent_hint = true,
        open_world_hint = false
    ))]
    async fn generate_monthly_report(
        &self,
        Parameters(a): Parameters<p::MonthlyReport>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> CallToolResult {
        if !calendar::is_month(&a.month) {
            return reply::<Value>(Err(DomainError::Invalid("month must be YYYY-MM".into())));
        }
        let mut progress_token = meta.get_progress_token();
        let total = REPORT_STEPS.len();
        let mut sections = Map::new();
        for (done, step) in (1..).zip(REPORT_STEPS) {
            let section =
                self.state()
                    .report_section(step, &a.month, a.by_provider.unwrap_or(true));
            sections.insert(step.to_owned(), section);
            tokio::time::sleep(REPORT_STEP_PAUSE).await;
            if let Some(token) = progress_token.clone() {
                let update = ProgressNotificationParam::new(token, f64::from(done))
                    .with_total(total as f64)
                    .with_message(format!("{step} ({done}/{total})"));
                if peer.notify_progress(update).await.is_err() {
                    // The client went away; finish the report without further updates.
                    progress_token = None;
                }
            }
        }
        reply::<Value>(Ok(json!({ "month": a.month, "sections": sections })))
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "toolgate-demo-dental",
    instructions = "Bright Smile Dental, a demo dental practice: patients, appointments, treatment plans, clinical notes, invoices and payments. All data is fictional and kept in memory."
)]
impl ServerHandler for DentalPractice {}
