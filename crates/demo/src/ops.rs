//! What each tool does to the patient, scheduling and clinical records
//! (billing and messaging are in `billing.rs`). Every operation checks its
//! arguments first and only then mutates, so a failed call changes nothing.

use serde_json::{json, Value};

use crate::calendar::{self, CLOSES_AT, OPENS_AT};
use crate::data::{Appointment, ClinicalNote, DomainError, Patient, Practice, TODAY};
use crate::params;

/// What an operation answers: the JSON of its result, or why it failed.
pub(crate) type Outcome = Result<Value, DomainError>;

pub(crate) fn invalid(message: impl Into<String>) -> DomainError {
    DomainError::Invalid(message.into())
}

fn summary(p: &Patient) -> Value {
    json!({
        "id": p.id,
        "name": format!("{} {}", p.first_name, p.last_name),
        "date_of_birth": p.date_of_birth,
        "phone": p.phone,
        "email": p.email,
        "status": p.status,
        "primary_provider_id": p.primary_provider_id,
        "balance_cents": p.balance_cents,
    })
}

pub(crate) fn check_email(email: &str) -> Result<(), DomainError> {
    let ok = email
        .split_once('@')
        .is_some_and(|(user, host)| !user.is_empty() && host.contains('.') && !email.contains(' '));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("`{email}` is not an email address")))
    }
}

fn limit(asked: Option<u32>, default: u32) -> usize {
    usize::try_from(asked.unwrap_or(default).clamp(1, 500)).unwrap_or(500)
}

/// Patients.
impl Practice {
    pub(crate) fn list_patients(&self, a: &params::ListPatients) -> Outcome {
        let rows: Vec<Value> = self
            .patients
            .values()
            .filter(|p| a.status.as_deref().is_none_or(|s| p.status == s))
            .filter(|p| {
                a.provider_id
                    .as_deref()
                    .is_none_or(|id| p.primary_provider_id == id)
            })
            .take(limit(a.limit, 50))
            .map(summary)
            .collect();
        Ok(json!({ "count": rows.len(), "patients": rows }))
    }

    pub(crate) fn get_patient(&self, id: &str) -> Outcome {
        let patient = self.patient(id)?;
        let upcoming: Vec<&Appointment> = self
            .appointments
            .values()
            .filter(|a| a.patient_id == id && a.status == "scheduled")
            .collect();
        Ok(json!({ "patient": patient, "upcoming_appointments": upcoming }))
    }

    pub(crate) fn search_patients(&self, a: &params::SearchPatients) -> Outcome {
        let needle = a.query.trim().to_lowercase();
        if needle.is_empty() {
            return Err(invalid("query must not be empty"));
        }
        let digits: String = needle.chars().filter(char::is_ascii_digit).collect();
        let rows: Vec<Value> = self
            .patients
            .values()
            .filter(|p| {
                let name = format!("{} {}", p.first_name, p.last_name).to_lowercase();
                let phone: String = p.phone.chars().filter(char::is_ascii_digit).collect();
                name.contains(&needle)
                    || p.email.to_lowercase().contains(&needle)
                    || p.date_of_birth.contains(&needle)
                    || (digits.len() >= 4 && phone.contains(&digits))
            })
            .take(limit(a.limit, 10))
            .map(summary)
            .collect();
        Ok(json!({ "query": a.query, "count": rows.len(), "patients": rows }))
    }

    pub(crate) fn create_patient(&mut self, a: &params::CreatePatient) -> Outcome {
        if a.first_name.trim().is_empty() || a.last_name.trim().is_empty() {
            return Err(invalid("first_name and last_name are required"));
        }
        if calendar::parse_date(&a.date_of_birth).is_none() || a.date_of_birth.as_str() > TODAY {
            return Err(invalid("date_of_birth must be a past date, YYYY-MM-DD"));
        }
        check_email(&a.email)?;
        let provider = a.primary_provider_id.as_deref().unwrap_or("prov_01");
        self.provider(provider)?;
        let id = self.next_id("pat");
        let patient = Patient {
            id: id.clone(),
            first_name: a.first_name.trim().to_owned(),
            last_name: a.last_name.trim().to_owned(),
            date_of_birth: a.date_of_birth.clone(),
            email: a.email.clone(),
            phone: a.phone.clone(),
            address: a.address.clone().unwrap_or_default(),
            status: "active".into(),
            primary_provider_id: provider.to_owned(),
            allergies: a.allergies.clone().unwrap_or_default(),
            insurance: None,
            chart: Vec::new(),
            balance_cents: 0,
            created_on: TODAY.into(),
        };
        let out = json!({ "created": patient });
        self.patients.insert(id, patient);
        Ok(out)
    }

    pub(crate) fn update_patient_contact(&mut self, a: &params::UpdateContact) -> Outcome {
        if a.email.is_none() && a.phone.is_none() && a.address.is_none() {
            return Err(invalid("give at least one of email, phone, address"));
        }
        if let Some(email) = &a.email {
            check_email(email)?;
        }
        let patient = self
            .patients
            .get_mut(&a.patient_id)
            .ok_or_else(|| DomainError::not_found("patient", &a.patient_id))?;
        let mut changed = Vec::new();
        for (field, new, slot) in [
            ("email", &a.email, &mut patient.email),
            ("phone", &a.phone, &mut patient.phone),
            ("address", &a.address, &mut patient.address),
        ] {
            if let Some(value) = new {
                changed.push(json!({ "field": field, "old": *slot, "new": value }));
                value.clone_into(slot);
            }
        }
        Ok(json!({ "patient": summary(patient), "changes": changed }))
    }

    pub(crate) fn delete_patient_record(&mut self, a: &params::DeletePatient) -> Outcome {
        if a.reason.trim().is_empty() {
            return Err(invalid("a reason is required to erase a record"));
        }
        let patient = self
            .patients
            .remove(&a.patient_id)
            .ok_or_else(|| DomainError::not_found("patient", &a.patient_id))?;
        let id = patient.id.as_str();
        let before = self.record_count();
        self.appointments.retain(|_, x| x.patient_id != id);
        self.plans.retain(|_, x| x.patient_id != id);
        self.notes.retain(|_, x| x.patient_id != id);
        self.invoices.retain(|_, x| x.patient_id != id);
        self.payments.retain(|_, x| x.patient_id != id);
        let payments = &self.payments;
        self.refunds
            .retain(|_, r| payments.contains_key(&r.payment_id));
        self.checkouts.retain(|_, x| x.patient_id != id);
        Ok(json!({
            "deleted": id,
            "name": format!("{} {}", patient.first_name, patient.last_name),
            "related_records_deleted": before - self.record_count(),
            "reason": a.reason,
        }))
    }

    fn record_count(&self) -> usize {
        self.appointments.len()
            + self.plans.len()
            + self.notes.len()
            + self.invoices.len()
            + self.payments.len()
            + self.checkouts.len()
            + self.refunds.len()
    }

    pub(crate) fn export_patient_data(&self, a: &params::ExportPatient) -> Outcome {
        let patient = self.patient(&a.patient_id)?;
        let id = a.patient_id.as_str();
        let mut out = json!({
            "format": "toolgate-demo/patient-export/v1",
            "exported_on": TODAY,
            "patient": patient,
            "appointments": self.appointments.values().filter(|x| x.patient_id == id).collect::<Vec<_>>(),
            "treatment_plans": self.plans.values().filter(|x| x.patient_id == id).collect::<Vec<_>>(),
        });
        if a.include_clinical.unwrap_or(true) {
            out["clinical_notes"] = json!(self
                .notes
                .values()
                .filter(|x| x.patient_id == id)
                .collect::<Vec<_>>());
        } else {
            out["patient"]["chart"] = json!("omitted");
        }
        if a.include_billing.unwrap_or(true) {
            out["invoices"] = json!(self
                .invoices
                .values()
                .filter(|x| x.patient_id == id)
                .collect::<Vec<_>>());
            out["payments"] = json!(self
                .payments
                .values()
                .filter(|x| x.patient_id == id)
                .collect::<Vec<_>>());
        }
        Ok(out)
    }
}

/// Scheduling.
impl Practice {
    pub(crate) fn list_providers(&self) -> Outcome {
        Ok(json!({ "providers": self.providers.values().collect::<Vec<_>>() }))
    }

    pub(crate) fn list_appointments(&self, a: &params::ListAppointments) -> Outcome {
        if let Some(date) = &a.date {
            calendar::parse_date(date).ok_or_else(|| invalid("date must be YYYY-MM-DD"))?;
        }
        let rows: Vec<&Appointment> = self
            .appointments
            .values()
            .filter(|x| a.patient_id.as_deref().is_none_or(|v| x.patient_id == v))
            .filter(|x| a.provider_id.as_deref().is_none_or(|v| x.provider_id == v))
            .filter(|x| a.status.as_deref().is_none_or(|v| x.status == v))
            .filter(|x| a.date.as_deref().is_none_or(|v| x.start.starts_with(v)))
            .collect();
        Ok(json!({ "count": rows.len(), "appointments": rows }))
    }

    /// Whether `provider` has a scheduled visit overlapping `[from, from + minutes)` on `date`,
    /// other than `except`.
    fn is_busy(&self, provider: &str, date: &str, from: u32, minutes: u32, except: &str) -> bool {
        self.appointments.values().any(|x| {
            x.provider_id == provider
                && x.status == "scheduled"
                && x.id != except
                && calendar::parse_start(&x.start).is_some_and(|(day, start)| {
                    day == date && start < from + minutes && from < start + x.duration_minutes
                })
        })
    }

    /// Validate a start time and length against opening hours and the provider's book.
    fn check_slot(
        &self,
        provider: &str,
        start: &str,
        minutes: u32,
        except: &str,
    ) -> Result<(), DomainError> {
        self.provider(provider)?;
        let (date, from) = calendar::parse_start(start)
            .ok_or_else(|| invalid(format!("`{start}` is not a start time YYYY-MM-DDTHH:MM")))?;
        if date < TODAY {
            return Err(invalid(format!("{date} is in the past (today is {TODAY})")));
        }
        if from < OPENS_AT || from + minutes > CLOSES_AT {
            return Err(invalid("the practice is open 08:00-17:00"));
        }
        if self.is_busy(provider, date, from, minutes, except) {
            return Err(DomainError::Conflict(format!(
                "{provider} already has a visit overlapping {start}"
            )));
        }
        Ok(())
    }

    pub(crate) fn find_available_slots(&self, a: &params::FindSlots) -> Outcome {
        calendar::parse_date(&a.date).ok_or_else(|| invalid("date must be YYYY-MM-DD"))?;
        let minutes = a.duration_minutes.unwrap_or(30);
        if !(15..=240).contains(&minutes) {
            return Err(invalid("duration_minutes must be 15 to 240"));
        }
        let providers: Vec<&str> = match &a.provider_id {
            Some(id) => vec![self.provider(id)?.id.as_str()],
            None => self.providers.keys().map(String::as_str).collect(),
        };
        let slots: Vec<Value> = providers
            .into_iter()
            .map(|provider| {
                let free: Vec<String> = (OPENS_AT..=CLOSES_AT.saturating_sub(minutes))
                    .step_by(30)
                    .filter(|from| !self.is_busy(provider, &a.date, *from, minutes, ""))
                    .map(|from| calendar::format_start(&a.date, from))
                    .collect();
                json!({ "provider_id": provider, "starts": free })
            })
            .collect();
        Ok(json!({ "date": a.date, "duration_minutes": minutes, "available": slots }))
    }

    pub(crate) fn create_appointment(&mut self, a: &params::CreateAppointment) -> Outcome {
        self.patient(&a.patient_id)?;
        if !(15..=240).contains(&a.duration_minutes) {
            return Err(invalid("duration_minutes must be 15 to 240"));
        }
        if a.kind.trim().is_empty() {
            return Err(invalid("kind must not be empty"));
        }
        self.check_slot(&a.provider_id, &a.start, a.duration_minutes, "")?;
        let id = self.next_id("apt");
        let appointment = Appointment {
            id: id.clone(),
            patient_id: a.patient_id.clone(),
            provider_id: a.provider_id.clone(),
            start: a.start.clone(),
            duration_minutes: a.duration_minutes,
            kind: a.kind.trim().to_owned(),
            status: "scheduled".into(),
            notes: a.notes.clone(),
            cancel_reason: None,
        };
        let out = json!({ "created": appointment });
        self.appointments.insert(id, appointment);
        Ok(out)
    }

    /// A scheduled (not cancelled or completed) appointment.
    pub(crate) fn scheduled(&self, id: &str) -> Result<&Appointment, DomainError> {
        let appointment = self
            .appointments
            .get(id)
            .ok_or_else(|| DomainError::not_found("appointment", id))?;
        if appointment.status == "scheduled" {
            Ok(appointment)
        } else {
            Err(DomainError::Conflict(format!(
                "appointment {id} is {}",
                appointment.status
            )))
        }
    }

    pub(crate) fn reschedule_appointment(&mut self, a: &params::RescheduleAppointment) -> Outcome {
        let current = self.scheduled(&a.appointment_id)?;
        let provider = a.provider_id.clone().unwrap_or(current.provider_id.clone());
        let (old_start, minutes) = (current.start.clone(), current.duration_minutes);
        self.check_slot(&provider, &a.new_start, minutes, &a.appointment_id)?;
        let appointment = self
            .appointments
            .get_mut(&a.appointment_id)
            .ok_or_else(|| DomainError::not_found("appointment", &a.appointment_id))?;
        a.new_start.clone_into(&mut appointment.start);
        appointment.provider_id = provider;
        Ok(json!({ "previous_start": old_start, "appointment": appointment }))
    }

    pub(crate) fn cancel_appointment(&mut self, a: &params::CancelAppointment) -> Outcome {
        self.scheduled(&a.appointment_id)?;
        let appointment = self
            .appointments
            .get_mut(&a.appointment_id)
            .ok_or_else(|| DomainError::not_found("appointment", &a.appointment_id))?;
        appointment.status = "cancelled".into();
        appointment.cancel_reason = Some(a.reason.clone());
        Ok(json!({ "cancelled": appointment }))
    }
}

/// Clinical records.
impl Practice {
    pub(crate) fn get_treatment_plan(&self, a: &params::GetTreatmentPlan) -> Outcome {
        match (&a.plan_id, &a.patient_id) {
            (Some(id), _) => {
                let plan = self
                    .plans
                    .get(id)
                    .ok_or_else(|| DomainError::not_found("treatment plan", id))?;
                Ok(json!({ "treatment_plan": plan }))
            }
            (None, Some(patient)) => {
                self.patient(patient)?;
                let plans: Vec<_> = self
                    .plans
                    .values()
                    .filter(|p| &p.patient_id == patient)
                    .collect();
                Ok(json!({ "patient_id": patient, "treatment_plans": plans }))
            }
            (None, None) => Err(invalid("give plan_id or patient_id")),
        }
    }

    pub(crate) fn update_treatment_plan_status(&mut self, a: &params::UpdatePlanStatus) -> Outcome {
        const STATUSES: [&str; 5] = [
            "proposed",
            "accepted",
            "in_progress",
            "completed",
            "declined",
        ];
        if !STATUSES.contains(&a.status.as_str()) {
            return Err(invalid(format!("status must be one of {STATUSES:?}")));
        }
        let plan = self
            .plans
            .get_mut(&a.plan_id)
            .ok_or_else(|| DomainError::not_found("treatment plan", &a.plan_id))?;
        let previous = std::mem::replace(&mut plan.status, a.status.clone());
        let mut entry = format!("{TODAY}: {previous} -> {}", a.status);
        if let Some(note) = &a.note {
            entry = format!("{entry} ({note})");
        }
        plan.history.push(entry);
        Ok(json!({ "previous_status": previous, "treatment_plan": plan }))
    }

    pub(crate) fn add_clinical_note(&mut self, a: &params::AddNote) -> Outcome {
        self.patient(&a.patient_id)?;
        self.provider(&a.provider_id)?;
        if a.text.trim().is_empty() {
            return Err(invalid("text must not be empty"));
        }
        let id = self.next_id("note");
        let note = ClinicalNote {
            id: id.clone(),
            patient_id: a.patient_id.clone(),
            provider_id: a.provider_id.clone(),
            written_on: TODAY.into(),
            tooth: a.tooth.clone(),
            text: a.text.trim().to_owned(),
        };
        let out = json!({ "created": note });
        self.notes.insert(id, note);
        Ok(out)
    }

    pub(crate) fn list_clinical_notes(&self, patient_id: &str) -> Outcome {
        self.patient(patient_id)?;
        let notes: Vec<_> = self
            .notes
            .values()
            .filter(|n| n.patient_id == patient_id)
            .collect();
        Ok(json!({ "patient_id": patient_id, "notes": notes }))
    }

    pub(crate) fn get_dental_chart(&self, patient_id: &str) -> Outcome {
        let patient = self.patient(patient_id)?;
        Ok(json!({
            "patient_id": patient_id,
            "numbering": "universal",
            "allergies": patient.allergies,
            "teeth": patient.chart,
        }))
    }
}
