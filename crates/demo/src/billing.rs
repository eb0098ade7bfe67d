//! Billing, payments, insurance and patient messaging: the operations that in
//! a real practice would reach a payment processor, a carrier or a mail relay.

use serde_json::{json, Value};

use crate::data::{
    invoice_status, CheckoutSession, DomainError, OutboundMessage, Practice, Refund, TODAY,
};
use crate::ops::{check_email, invalid, Outcome};
use crate::params;

/// Billing and payments.
impl Practice {
    pub(crate) fn list_invoices(&self, a: &params::ListInvoices) -> Outcome {
        let rows: Vec<Value> = self
            .invoices
            .values()
            .filter(|x| a.patient_id.as_deref().is_none_or(|v| x.patient_id == v))
            .filter(|x| a.status.as_deref().is_none_or(|v| x.status == v))
            .map(|x| {
                json!({
                    "id": x.id, "patient_id": x.patient_id, "issued_on": x.issued_on,
                    "due_on": x.due_on, "status": x.status, "total_cents": x.total_cents,
                    "paid_cents": x.paid_cents,
                })
            })
            .collect();
        Ok(json!({ "count": rows.len(), "invoices": rows }))
    }

    pub(crate) fn get_invoice(&self, id: &str) -> Outcome {
        let invoice = self
            .invoices
            .get(id)
            .ok_or_else(|| DomainError::not_found("invoice", id))?;
        let payments: Vec<_> = self
            .payments
            .values()
            .filter(|p| p.invoice_id == id)
            .collect();
        Ok(json!({
            "invoice": invoice,
            "balance_due_cents": invoice.total_cents.saturating_sub(invoice.paid_cents),
            "payments": payments,
        }))
    }

    pub(crate) fn list_payments(&self, a: &params::ListPayments) -> Outcome {
        let rows: Vec<_> = self
            .payments
            .values()
            .filter(|x| a.patient_id.as_deref().is_none_or(|v| x.patient_id == v))
            .filter(|x| a.invoice_id.as_deref().is_none_or(|v| x.invoice_id == v))
            .collect();
        Ok(json!({ "count": rows.len(), "payments": rows }))
    }

    pub(crate) fn create_checkout(&mut self, a: &params::CreateCheckout) -> Outcome {
        if let Some(key) = &a.idempotency_key {
            if let Some(existing) = self
                .checkouts
                .values()
                .find(|c| c.idempotency_key.as_ref() == Some(key))
            {
                return Ok(json!({ "replayed": true, "checkout_session": existing }));
            }
        }
        let patient = self.patient(&a.patient_id)?;
        if a.amount == 0 || a.amount > 5_000_000 {
            return Err(invalid("amount must be 1 to 5000000 cents"));
        }
        let currency = a.currency.to_lowercase();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(invalid("currency must be an ISO 4217 code such as `usd`"));
        }
        for url in [&a.success_url, &a.cancel_url] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(invalid(format!("`{url}` is not an http(s) URL")));
            }
        }
        let expires = a.expires_in_minutes.unwrap_or(60);
        if !(30..=1440).contains(&expires) {
            return Err(invalid("expires_in_minutes must be 30 to 1440"));
        }
        if let Some(plan) = &a.treatment_plan_id {
            let found = self
                .plans
                .get(plan)
                .ok_or_else(|| DomainError::not_found("treatment plan", plan))?;
            if found.patient_id != a.patient_id {
                return Err(invalid(format!("{plan} belongs to another patient")));
            }
        }
        let mut lines = Vec::new();
        if let Some(items) = &a.line_items {
            let mut sum: u64 = 0;
            for item in items {
                let quantity = item.quantity.unwrap_or(1);
                sum = sum.saturating_add(item.amount.saturating_mul(u64::from(quantity)));
                lines.push(json!({
                    "description": item.description, "amount": item.amount,
                    "quantity": quantity, "cdt_code": item.cdt_code,
                }));
            }
            if sum != a.amount {
                return Err(invalid(format!(
                    "line_items add up to {sum}, but amount is {}",
                    a.amount
                )));
            }
        }
        let email = a.customer_email.clone().unwrap_or(patient.email.clone());
        check_email(&email)?;
        let id = self.next_id("cs_demo");
        let session = CheckoutSession {
            url: format!("https://pay.example.test/checkout/{id}"),
            id: id.clone(),
            status: "open".into(),
            patient_id: a.patient_id.clone(),
            treatment_plan_id: a.treatment_plan_id.clone(),
            amount_cents: a.amount,
            currency,
            description: a.description.clone(),
            line_items: lines,
            customer_email: email,
            payment_method_types: a
                .payment_method_types
                .clone()
                .unwrap_or_else(|| vec!["card".into()]),
            metadata: a.metadata.clone().unwrap_or_default(),
            success_url: a.success_url.clone(),
            cancel_url: a.cancel_url.clone(),
            expires_in_minutes: expires,
            idempotency_key: a.idempotency_key.clone(),
            created_on: TODAY.into(),
        };
        let out = json!({ "replayed": false, "checkout_session": session });
        self.checkouts.insert(id, session);
        Ok(out)
    }

    pub(crate) fn refund_payment(&mut self, a: &params::RefundPayment) -> Outcome {
        let payment = self
            .payments
            .get(&a.payment_id)
            .ok_or_else(|| DomainError::not_found("payment", &a.payment_id))?;
        let refundable = payment.amount_cents.saturating_sub(payment.refunded_cents);
        if a.amount == 0 {
            return Err(invalid("amount must be at least 1 cent"));
        }
        if a.amount > refundable {
            return Err(DomainError::Conflict(format!(
                "only {refundable} cents of {} remain refundable",
                a.payment_id
            )));
        }
        let (invoice_id, patient_id) = (payment.invoice_id.clone(), payment.patient_id.clone());
        let id = self.next_id("re");
        if let Some(payment) = self.payments.get_mut(&a.payment_id) {
            payment.refunded_cents += a.amount;
        }
        if let Some(invoice) = self.invoices.get_mut(&invoice_id) {
            invoice.paid_cents = invoice.paid_cents.saturating_sub(a.amount);
            invoice.status = invoice_status(invoice.total_cents, invoice.paid_cents).into();
        }
        if let Some(patient) = self.patients.get_mut(&patient_id) {
            patient.balance_cents += i64::try_from(a.amount).unwrap_or(i64::MAX);
        }
        let refund = Refund {
            id: id.clone(),
            payment_id: a.payment_id.clone(),
            amount_cents: a.amount,
            reason: a.reason.as_str().into(),
            status: "succeeded".into(),
            created_on: TODAY.into(),
        };
        let out = json!({ "refund": refund, "remaining_refundable_cents": refundable - a.amount });
        self.refunds.insert(id, refund);
        Ok(out)
    }

    pub(crate) fn verify_insurance_eligibility(&self, a: &params::VerifyEligibility) -> Outcome {
        let patient = self.patient(&a.patient_id)?;
        let Some(ins) = &patient.insurance else {
            return Ok(
                json!({ "patient_id": a.patient_id, "eligible": false, "reason": "no insurance on file" }),
            );
        };
        let coverage = a.cdt_code.as_deref().map(|code| {
            let percent = if code.starts_with("D0") || code.starts_with("D1") {
                100
            } else if code.starts_with("D27") || code.starts_with("D6") {
                50
            } else {
                80
            };
            json!({ "cdt_code": code, "coverage_percent": percent, "waiting_period": "none" })
        });
        Ok(json!({
            "patient_id": a.patient_id,
            "eligible": true,
            "carrier": ins.carrier,
            "member_id": ins.member_id,
            "checked_on": TODAY,
            "remaining_annual_maximum_cents": ins.annual_maximum_cents.saturating_sub(ins.used_this_year_cents),
            "procedure": coverage,
        }))
    }
}

/// Patient communication.
impl Practice {
    fn record_message(
        &mut self,
        channel: &str,
        to: &str,
        subject: Option<&str>,
        body: String,
    ) -> Value {
        let patient_id = self
            .patients
            .values()
            .find(|p| p.email.eq_ignore_ascii_case(to) || p.phone == to)
            .map(|p| p.id.clone());
        let id = self.next_id("msg");
        let message = OutboundMessage {
            id: id.clone(),
            channel: channel.into(),
            to: to.into(),
            patient_id,
            subject: subject.map(String::from),
            body,
            status: "queued".into(),
            sent_on: TODAY.into(),
        };
        let out = json!({ "message": message });
        self.outbox.insert(id, message);
        out
    }

    pub(crate) fn send_patient_email(&mut self, a: &params::SendEmail) -> Outcome {
        check_email(&a.to)?;
        if a.subject.trim().is_empty() || a.body.trim().is_empty() {
            return Err(invalid("subject and body must not be empty"));
        }
        Ok(self.record_message("email", &a.to, Some(&a.subject), a.body.clone()))
    }

    pub(crate) fn send_appointment_reminder(&mut self, a: &params::SendReminder) -> Outcome {
        let appointment = self.scheduled(&a.appointment_id)?;
        let patient = self.patient(&appointment.patient_id)?;
        let provider = self.provider(&appointment.provider_id)?;
        let body = format!(
            "Hi {}, this is a reminder of your {} with {} on {}. Reply C to confirm.",
            patient.first_name,
            appointment.kind.replace('_', " "),
            provider.name,
            appointment.start.replace('T', " at "),
        );
        let (to, subject) = match a.channel.as_deref().unwrap_or("sms") {
            "sms" => (patient.phone.clone(), None),
            "email" => (patient.email.clone(), Some("Appointment reminder")),
            other => {
                return Err(invalid(format!(
                    "channel must be sms or email, not `{other}`"
                )))
            }
        };
        Ok(self.record_message(a.channel.as_deref().unwrap_or("sms"), &to, subject, body))
    }
}
