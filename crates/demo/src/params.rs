//! Tool arguments. Each struct's JSON Schema (from `schemars`) becomes the
//! tool's `inputSchema`; the `///` comments become property descriptions.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments of `list_patients`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ListPatients {
    /// Only patients with this status: `active` or `inactive`.
    pub status: Option<String>,
    /// Only patients whose primary provider is this provider id.
    pub provider_id: Option<String>,
    /// At most this many patients (default 50).
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
}

/// Arguments naming one patient.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct PatientRef {
    /// The patient's id, e.g. `pat_1001`.
    pub patient_id: String,
}

/// Arguments of `search_patients`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct SearchPatients {
    /// Free text matched case-insensitively against name, email, phone and date of birth.
    pub query: String,
    /// At most this many matches (default 10).
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
}

/// Arguments of `create_patient`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct CreatePatient {
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Date of birth, `YYYY-MM-DD`.
    pub date_of_birth: String,
    /// Email address for reminders and statements.
    #[schemars(email)]
    pub email: String,
    /// Phone number, ideally E.164.
    pub phone: String,
    /// Postal address.
    pub address: Option<String>,
    /// Provider id of the patient's primary dentist or hygienist.
    pub primary_provider_id: Option<String>,
    /// Known allergies, e.g. `penicillin`, `latex`.
    pub allergies: Option<Vec<String>>,
}

/// Arguments of `update_patient_contact`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct UpdateContact {
    /// The patient's id.
    pub patient_id: String,
    /// New email address.
    pub email: Option<String>,
    /// New phone number.
    pub phone: Option<String>,
    /// New postal address.
    pub address: Option<String>,
}

/// Arguments of `delete_patient_record`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct DeletePatient {
    /// The patient's id.
    pub patient_id: String,
    /// Why the record is being erased (kept in the audit trail).
    pub reason: String,
}

/// Arguments of `export_patient_data`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ExportPatient {
    /// The patient's id.
    pub patient_id: String,
    /// Include clinical notes and the dental chart (default true).
    pub include_clinical: Option<bool>,
    /// Include invoices and payments (default true).
    pub include_billing: Option<bool>,
}

/// Arguments of `list_appointments`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ListAppointments {
    /// Only this patient's appointments.
    pub patient_id: Option<String>,
    /// Only appointments with this provider.
    pub provider_id: Option<String>,
    /// Only appointments on this day, `YYYY-MM-DD`.
    pub date: Option<String>,
    /// Only appointments with this status: `scheduled`, `completed` or `cancelled`.
    pub status: Option<String>,
}

/// Arguments of `find_available_slots`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct FindSlots {
    /// The day to search, `YYYY-MM-DD`.
    pub date: String,
    /// Only this provider's chair (default: every provider).
    pub provider_id: Option<String>,
    /// Length of the visit in minutes (default 30).
    #[schemars(range(min = 15, max = 240))]
    pub duration_minutes: Option<u32>,
}

/// Arguments of `create_appointment`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct CreateAppointment {
    /// The patient's id.
    pub patient_id: String,
    /// The provider's id.
    pub provider_id: String,
    /// Local start time, `YYYY-MM-DDTHH:MM`, within opening hours 08:00-17:00.
    pub start: String,
    /// Length in minutes, 15 to 240.
    #[schemars(range(min = 15, max = 240))]
    pub duration_minutes: u32,
    /// Visit type, e.g. `cleaning`, `exam`, `filling`, `crown_prep`, `root_canal`, `consultation`.
    pub kind: String,
    /// Free-text note for the front desk.
    pub notes: Option<String>,
}

/// Arguments of `reschedule_appointment`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct RescheduleAppointment {
    /// The appointment's id, e.g. `apt_2004`.
    pub appointment_id: String,
    /// New local start time, `YYYY-MM-DDTHH:MM`.
    pub new_start: String,
    /// Move the visit to this provider as well (default: same provider).
    pub provider_id: Option<String>,
}

/// Arguments of `cancel_appointment`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct CancelAppointment {
    /// The appointment's id.
    pub appointment_id: String,
    /// Why it is cancelled, e.g. `patient_request`, `provider_unavailable`.
    pub reason: String,
}

/// Arguments of `get_treatment_plan`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct GetTreatmentPlan {
    /// A plan id, e.g. `tp_3001`.
    pub plan_id: Option<String>,
    /// Or a patient id: returns every plan of that patient.
    pub patient_id: Option<String>,
}

/// Arguments of `update_treatment_plan_status`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct UpdatePlanStatus {
    /// The plan's id.
    pub plan_id: String,
    /// New status: `proposed`, `accepted`, `in_progress`, `completed` or `declined`.
    pub status: String,
    /// Optional remark recorded in the plan history.
    pub note: Option<String>,
}

/// Arguments of `add_clinical_note`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct AddNote {
    /// The patient's id.
    pub patient_id: String,
    /// The writing provider's id.
    pub provider_id: String,
    /// The note text (SOAP or free text).
    pub text: String,
    /// Tooth number the note is about (universal numbering, `1`-`32` or `A`-`T`).
    pub tooth: Option<String>,
}

/// Arguments of `list_invoices`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ListInvoices {
    /// Only this patient's invoices.
    pub patient_id: Option<String>,
    /// Only invoices with this status: `open`, `partially_paid` or `paid`.
    pub status: Option<String>,
}

/// Arguments of `get_invoice`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct InvoiceRef {
    /// The invoice's id, e.g. `inv_4001`.
    pub invoice_id: String,
}

/// Arguments of `list_payments`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ListPayments {
    /// Only this patient's payments.
    pub patient_id: Option<String>,
    /// Only payments against this invoice.
    pub invoice_id: Option<String>,
}

/// One line of a checkout session.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct CheckoutLineItem {
    /// What is being paid for.
    pub description: String,
    /// Unit price in the smallest currency unit (cents).
    pub amount: u64,
    /// How many units (default 1).
    pub quantity: Option<u32>,
    /// CDT procedure code, if the line is a procedure.
    pub cdt_code: Option<String>,
}

/// Arguments of `create_agent_checkout_session`: thirteen properties.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct CreateCheckout {
    /// The paying patient's id.
    pub patient_id: String,
    /// Total to charge, an integer in the smallest currency unit (cents).
    #[schemars(range(min = 1, max = 5_000_000))]
    pub amount: u64,
    /// ISO 4217 currency code, e.g. `usd`.
    #[schemars(regex(pattern = r"^[A-Za-z]{3}$"))]
    pub currency: String,
    /// Text shown on the checkout page.
    pub description: Option<String>,
    /// Itemisation; when given, the lines must add up to `amount`.
    pub line_items: Option<Vec<CheckoutLineItem>>,
    /// Where the payer is sent after paying.
    pub success_url: String,
    /// Where the payer is sent on abandoning the checkout.
    pub cancel_url: String,
    /// Receipt email (default: the patient's email on file).
    pub customer_email: Option<String>,
    /// Accepted methods, e.g. `card`, `hsa_card`, `us_bank_account` (default `card`).
    pub payment_method_types: Option<Vec<String>>,
    /// Free-form string key/value pairs stored with the session.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Minutes until the link expires, 30 to 1440 (default 60).
    #[schemars(range(min = 30, max = 1440))]
    pub expires_in_minutes: Option<u32>,
    /// The treatment plan this payment is for, if any.
    pub treatment_plan_id: Option<String>,
    /// Repeat a call with the same key to get the same session back.
    pub idempotency_key: Option<String>,
}

/// Why a payment is refunded.
#[derive(Debug, Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RefundReason {
    /// The patient asked for their money back.
    RequestedByCustomer,
    /// The patient was charged twice.
    Duplicate,
    /// The charge was not made by the card holder.
    Fraudulent,
    /// The procedure paid for was not performed.
    TreatmentNotPerformed,
    /// Insurance paid more than estimated; the overpayment is returned.
    InsuranceAdjustment,
}

impl RefundReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::RequestedByCustomer => "requested_by_customer",
            Self::Duplicate => "duplicate",
            Self::Fraudulent => "fraudulent",
            Self::TreatmentNotPerformed => "treatment_not_performed",
            Self::InsuranceAdjustment => "insurance_adjustment",
        }
    }
}

/// Arguments of `refund_payment`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct RefundPayment {
    /// The payment's id, e.g. `pay_5001`.
    pub payment_id: String,
    /// Amount to refund in cents; at most what is left unrefunded.
    #[schemars(range(min = 1))]
    pub amount: u64,
    /// Why the money is returned.
    pub reason: RefundReason,
}

/// Arguments of `verify_insurance_eligibility`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct VerifyEligibility {
    /// The patient's id.
    pub patient_id: String,
    /// CDT code to check coverage for, e.g. `D2740`.
    pub cdt_code: Option<String>,
}

/// Arguments of `send_patient_email`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct SendEmail {
    /// Recipient email address.
    #[schemars(email)]
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

/// Arguments of `send_appointment_reminder`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct SendReminder {
    /// The appointment's id.
    pub appointment_id: String,
    /// `sms` (default) or `email`.
    pub channel: Option<String>,
}

/// Arguments of `run_report_sql`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct RunSql {
    /// One read-only `SELECT` statement over the tables `patients`, `appointments`,
    /// `treatment_plans`, `invoices`, `payments`, `refunds`, `clinical_notes`, `providers`.
    pub sql: String,
}

/// Arguments of `generate_monthly_report`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct MonthlyReport {
    /// The month, `YYYY-MM`.
    pub month: String,
    /// Include per-provider production (default true).
    pub by_provider: Option<bool>,
}
