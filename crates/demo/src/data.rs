//! The practice's records and the seed data the demo starts from.
//!
//! Everything lives in memory: a [`Practice`] is built by `Practice::seeded`
//! (in `seed.rs`) and every mutation edits it in place. The demo runs on a fixed calendar
//! ([`TODAY`]) so that its answers are reproducible.

use std::collections::BTreeMap;

use serde::Serialize;

/// The demo practice's "today": new records are stamped with this date.
pub(crate) const TODAY: &str = "2026-11-24";

/// Why a request against the practice's records could not be carried out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DomainError {
    /// No record of that kind has that id.
    #[error("{kind} `{id}` was not found")]
    NotFound {
        /// What was looked up, e.g. "patient".
        kind: &'static str,
        /// The id that was asked for.
        id: String,
    },
    /// An argument was malformed or out of range.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The request clashes with the current state (double booking, over-refund, ...).
    #[error("conflict: {0}")]
    Conflict(String),
}

impl DomainError {
    pub(crate) fn not_found(kind: &'static str, id: &str) -> Self {
        Self::NotFound {
            kind,
            id: id.to_owned(),
        }
    }
}

/// A patient's dental insurance coverage.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Insurance {
    pub carrier: String,
    pub member_id: String,
    pub group_number: String,
    pub annual_maximum_cents: u64,
    pub used_this_year_cents: u64,
}

/// One tooth's recorded condition on the dental chart (universal numbering).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ToothCondition {
    pub tooth: String,
    pub condition: String,
    pub surfaces: String,
}

/// A patient of the practice.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Patient {
    pub id: String,
    pub first_name: String,
    pub last_name: String,
    pub date_of_birth: String,
    pub email: String,
    pub phone: String,
    pub address: String,
    pub status: String,
    pub primary_provider_id: String,
    pub allergies: Vec<String>,
    pub insurance: Option<Insurance>,
    pub chart: Vec<ToothCondition>,
    pub balance_cents: i64,
    pub created_on: String,
}

/// A dentist or hygienist who sees patients.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Provider {
    pub id: String,
    pub name: String,
    pub role: String,
    pub operatory: String,
}

/// A booked chair time.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Appointment {
    pub id: String,
    pub patient_id: String,
    pub provider_id: String,
    /// Local start time, `YYYY-MM-DDTHH:MM`.
    pub start: String,
    pub duration_minutes: u32,
    pub kind: String,
    pub status: String,
    pub notes: Option<String>,
    pub cancel_reason: Option<String>,
}

/// One procedure in a treatment plan, coded with its CDT code.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PlanItem {
    pub cdt_code: String,
    pub description: String,
    pub tooth: Option<String>,
    pub fee_cents: u64,
    pub insurance_estimate_cents: u64,
    pub status: String,
}

/// A proposed or accepted course of treatment.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TreatmentPlan {
    pub id: String,
    pub patient_id: String,
    pub title: String,
    pub status: String,
    pub created_on: String,
    pub items: Vec<PlanItem>,
    pub total_fee_cents: u64,
    pub patient_portion_cents: u64,
    pub history: Vec<String>,
}

/// One billed line of an invoice.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct InvoiceLine {
    pub cdt_code: String,
    pub description: String,
    pub amount_cents: u64,
}

/// A bill sent to a patient.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Invoice {
    pub id: String,
    pub patient_id: String,
    pub issued_on: String,
    pub due_on: String,
    pub status: String,
    pub lines: Vec<InvoiceLine>,
    pub total_cents: u64,
    pub paid_cents: u64,
}

/// Money received against an invoice.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Payment {
    pub id: String,
    pub invoice_id: String,
    pub patient_id: String,
    pub amount_cents: u64,
    pub method: String,
    pub received_on: String,
    pub refunded_cents: u64,
}

/// Money given back on a payment.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Refund {
    pub id: String,
    pub payment_id: String,
    pub amount_cents: u64,
    pub reason: String,
    pub status: String,
    pub created_on: String,
}

/// A chart note written by a provider.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ClinicalNote {
    pub id: String,
    pub patient_id: String,
    pub provider_id: String,
    pub written_on: String,
    pub tooth: Option<String>,
    pub text: String,
}

/// A message the practice sent out (email or SMS), kept in the outbox.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OutboundMessage {
    pub id: String,
    pub channel: String,
    pub to: String,
    pub patient_id: Option<String>,
    pub subject: Option<String>,
    pub body: String,
    pub status: String,
    pub sent_on: String,
}

/// A hosted checkout page created for an agent to hand to a patient.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CheckoutSession {
    pub id: String,
    pub url: String,
    pub status: String,
    pub patient_id: String,
    pub treatment_plan_id: Option<String>,
    pub amount_cents: u64,
    pub currency: String,
    pub description: Option<String>,
    pub line_items: Vec<serde_json::Value>,
    pub customer_email: String,
    pub payment_method_types: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub success_url: String,
    pub cancel_url: String,
    pub expires_in_minutes: u32,
    pub idempotency_key: Option<String>,
    pub created_on: String,
}

/// The whole in-memory state of the demo practice.
#[derive(Debug, Clone, Default)]
pub(crate) struct Practice {
    pub patients: BTreeMap<String, Patient>,
    pub providers: BTreeMap<String, Provider>,
    pub appointments: BTreeMap<String, Appointment>,
    pub plans: BTreeMap<String, TreatmentPlan>,
    pub invoices: BTreeMap<String, Invoice>,
    pub payments: BTreeMap<String, Payment>,
    pub refunds: BTreeMap<String, Refund>,
    pub notes: BTreeMap<String, ClinicalNote>,
    pub outbox: BTreeMap<String, OutboundMessage>,
    pub checkouts: BTreeMap<String, CheckoutSession>,
    next_id: u64,
}

impl Practice {
    /// A fresh id with the given prefix, unique within this practice.
    pub(crate) fn next_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{:04}", 9000 + self.next_id)
    }

    /// Look a patient up, or say which id was unknown.
    pub(crate) fn patient(&self, id: &str) -> Result<&Patient, DomainError> {
        self.patients
            .get(id)
            .ok_or_else(|| DomainError::not_found("patient", id))
    }

    /// Look a provider up, or say which id was unknown.
    pub(crate) fn provider(&self, id: &str) -> Result<&Provider, DomainError> {
        self.providers
            .get(id)
            .ok_or_else(|| DomainError::not_found("provider", id))
    }
}

/// The status word for an invoice with this total and amount paid.
pub(crate) fn invoice_status(total: u64, paid: u64) -> &'static str {
    if paid == 0 {
        "open"
    } else if paid >= total {
        "paid"
    } else {
        "partially_paid"
    }
}
