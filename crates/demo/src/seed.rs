//! The records the demo practice starts with: three providers, four patients
//! and their appointments, treatment plans, notes, invoices and payments.

use crate::calendar;
use crate::data::{
    invoice_status, Appointment, ClinicalNote, Insurance, Invoice, InvoiceLine, Patient, Payment,
    PlanItem, Practice, Provider, ToothCondition, TreatmentPlan,
};

impl Practice {
    /// The practice as the demo starts: four patients, three providers and
    /// their appointments, plans, invoices and payments.
    pub(crate) fn seeded() -> Self {
        let mut p = Self::default();
        for (id, name, role, op) in [
            (
                "prov_01",
                "Dr. Amara Okafor, DDS",
                "general_dentist",
                "Op 1",
            ),
            ("prov_02", "Dr. Lukas Brandt, DMD", "endodontist", "Op 2"),
            ("prov_03", "Jenna Ruiz, RDH", "hygienist", "Op 3"),
        ] {
            p.providers.insert(
                id.into(),
                Provider {
                    id: id.into(),
                    name: name.into(),
                    role: role.into(),
                    operatory: op.into(),
                },
            );
        }
        seed_patients(&mut p);
        seed_appointments(&mut p);
        seed_plans(&mut p);
        seed_billing(&mut p);
        p.notes.insert(
            "note_6001".into(),
            ClinicalNote {
                id: "note_6001".into(),
                patient_id: "pat_1001".into(),
                provider_id: "prov_01".into(),
                written_on: "2026-10-14".into(),
                tooth: Some("19".into()),
                text: "MOD amalgam on #19 fractured at the lingual cusp. Recommended crown; \
                       patient wants to check insurance first."
                    .into(),
            },
        );
        p.notes.insert(
            "note_6002".into(),
            ClinicalNote {
                id: "note_6002".into(),
                patient_id: "pat_1002".into(),
                provider_id: "prov_03".into(),
                written_on: "2026-09-30".into(),
                tooth: None,
                text: "Generalised 4-5 mm pockets, bleeding on probing. SRP in four quadrants \
                       proposed."
                    .into(),
            },
        );
        p
    }
}

fn tooth(tooth: &str, condition: &str, surfaces: &str) -> ToothCondition {
    ToothCondition {
        tooth: tooth.into(),
        condition: condition.into(),
        surfaces: surfaces.into(),
    }
}

fn seed_patients(p: &mut Practice) {
    let rows = [
        (
            "pat_1001",
            ("Maria", "Gonzalez", "1984-03-12"),
            ("maria.gonzalez@example.com", "+1-555-0142"),
            "118 Alder St, Portland, OR 97205",
            "prov_01",
            vec!["penicillin"],
            Some((
                "Delta Dental PPO",
                "DDP-448812",
                "GRP-2207",
                150_000,
                41_000,
            )),
            vec![
                tooth("19", "fractured_restoration", "MOD"),
                tooth("30", "crown", "full"),
            ],
            12_500,
            "2019-06-03",
        ),
        (
            "pat_1002",
            ("James", "Whitfield", "1971-11-02"),
            ("j.whitfield@example.net", "+1-555-0178"),
            "42 Harbor View Rd, Portland, OR 97217",
            "prov_03",
            vec![],
            Some(("MetLife Dental", "MET-901233", "GRP-5510", 200_000, 18_000)),
            vec![tooth("3", "watch", "O"), tooth("14", "root_canal", "full")],
            0,
            "2021-01-19",
        ),
        (
            "pat_1003",
            ("Priya", "Raman", "1996-07-25"),
            ("priya.raman@example.org", "+1-555-0113"),
            "9 Birchwood Ct, Beaverton, OR 97005",
            "prov_01",
            vec!["latex"],
            None,
            vec![
                tooth("1", "impacted", "full"),
                tooth("32", "impacted", "full"),
            ],
            48_000,
            "2024-02-27",
        ),
        (
            "pat_1004",
            ("Tomasz", "Nowak", "2012-05-09"),
            ("nowak.family@example.com", "+1-555-0199"),
            "770 Cedar Loop, Lake Oswego, OR 97034",
            "prov_03",
            vec![],
            Some(("Cigna Dental", "CIG-330172", "GRP-0091", 100_000, 0)),
            vec![tooth("A", "sealant", "O"), tooth("30", "sealant", "O")],
            0,
            "2022-08-15",
        ),
    ];
    for (
        id,
        (first, last, dob),
        (email, phone),
        address,
        provider,
        allergies,
        insurance,
        chart,
        balance,
        since,
    ) in rows
    {
        p.patients.insert(
            id.into(),
            Patient {
                id: id.into(),
                first_name: first.into(),
                last_name: last.into(),
                date_of_birth: dob.into(),
                email: email.into(),
                phone: phone.into(),
                address: address.into(),
                status: "active".into(),
                primary_provider_id: provider.into(),
                allergies: allergies.into_iter().map(String::from).collect(),
                insurance: insurance.map(|(carrier, member, group, max, used)| Insurance {
                    carrier: carrier.into(),
                    member_id: member.into(),
                    group_number: group.into(),
                    annual_maximum_cents: max,
                    used_this_year_cents: used,
                }),
                chart,
                balance_cents: balance,
                created_on: since.into(),
            },
        );
    }
}

fn seed_appointments(p: &mut Practice) {
    let rows = [
        (
            "apt_2001",
            "pat_1001",
            "prov_01",
            "2026-11-03T09:00",
            60,
            "crown_prep",
            "completed",
        ),
        (
            "apt_2002",
            "pat_1002",
            "prov_03",
            "2026-11-10T13:30",
            90,
            "scaling_root_planing",
            "completed",
        ),
        (
            "apt_2003",
            "pat_1004",
            "prov_03",
            "2026-11-18T15:00",
            45,
            "cleaning",
            "cancelled",
        ),
        (
            "apt_2004",
            "pat_1001",
            "prov_01",
            "2026-11-26T10:00",
            60,
            "crown_seat",
            "scheduled",
        ),
        (
            "apt_2005",
            "pat_1003",
            "prov_01",
            "2026-12-01T08:30",
            30,
            "consultation",
            "scheduled",
        ),
        (
            "apt_2006",
            "pat_1002",
            "prov_02",
            "2026-12-02T11:00",
            90,
            "root_canal_retreatment",
            "scheduled",
        ),
    ];
    for (id, patient, provider, start, minutes, kind, status) in rows {
        p.appointments.insert(
            id.into(),
            Appointment {
                id: id.into(),
                patient_id: patient.into(),
                provider_id: provider.into(),
                start: start.into(),
                duration_minutes: minutes,
                kind: kind.into(),
                status: status.into(),
                notes: None,
                cancel_reason: (status == "cancelled").then(|| "patient_sick".to_owned()),
            },
        );
    }
}

fn plan_item(code: &str, what: &str, tooth: Option<&str>, fee: u64, ins: u64) -> PlanItem {
    PlanItem {
        cdt_code: code.into(),
        description: what.into(),
        tooth: tooth.map(String::from),
        fee_cents: fee,
        insurance_estimate_cents: ins,
        status: "planned".into(),
    }
}

fn seed_plans(p: &mut Practice) {
    let plans = [
        (
            "tp_3001",
            "pat_1001",
            "Restore #19 with a crown",
            "accepted",
            "2026-10-14",
            vec![
                plan_item(
                    "D2740",
                    "Crown, porcelain/ceramic",
                    Some("19"),
                    135_000,
                    67_500,
                ),
                plan_item(
                    "D2950",
                    "Core buildup, including pins",
                    Some("19"),
                    28_000,
                    14_000,
                ),
            ],
        ),
        (
            "tp_3002",
            "pat_1002",
            "Periodontal therapy and retreatment of #14",
            "in_progress",
            "2026-09-30",
            vec![
                plan_item(
                    "D4341",
                    "Scaling and root planing, 4+ teeth per quadrant",
                    None,
                    96_000,
                    76_800,
                ),
                plan_item(
                    "D3330",
                    "Endodontic retreatment, molar",
                    Some("14"),
                    142_000,
                    71_000,
                ),
            ],
        ),
        (
            "tp_3003",
            "pat_1003",
            "Extraction of impacted third molars",
            "proposed",
            "2026-11-12",
            vec![
                plan_item(
                    "D7240",
                    "Removal of impacted tooth, completely bony",
                    Some("1"),
                    62_000,
                    0,
                ),
                plan_item(
                    "D7240",
                    "Removal of impacted tooth, completely bony",
                    Some("32"),
                    62_000,
                    0,
                ),
                plan_item(
                    "D9239",
                    "IV moderate sedation, first 15 minutes",
                    None,
                    45_000,
                    0,
                ),
            ],
        ),
    ];
    for (id, patient, title, status, created, items) in plans {
        let total: u64 = items.iter().map(|i| i.fee_cents).sum();
        let covered: u64 = items.iter().map(|i| i.insurance_estimate_cents).sum();
        p.plans.insert(
            id.into(),
            TreatmentPlan {
                id: id.into(),
                patient_id: patient.into(),
                title: title.into(),
                status: status.into(),
                created_on: created.into(),
                items,
                total_fee_cents: total,
                patient_portion_cents: total.saturating_sub(covered),
                history: vec![format!("{created}: proposed")],
            },
        );
    }
}

fn line(code: &str, what: &str, amount: u64) -> InvoiceLine {
    InvoiceLine {
        cdt_code: code.into(),
        description: what.into(),
        amount_cents: amount,
    }
}

fn seed_billing(p: &mut Practice) {
    let invoices = [
        (
            "inv_4001",
            "pat_1001",
            "2026-11-03",
            vec![
                line("D2950", "Core buildup #19 (patient portion)", 14_000),
                line("D2740", "Crown #19, first half (patient portion)", 33_750),
            ],
            35_250,
        ),
        (
            "inv_4002",
            "pat_1002",
            "2026-11-10",
            vec![line("D4341", "SRP, two quadrants (patient portion)", 9_600)],
            9_600,
        ),
        (
            "inv_4003",
            "pat_1003",
            "2026-10-02",
            vec![
                line("D0150", "Comprehensive oral evaluation", 12_000),
                line("D0330", "Panoramic radiograph", 16_000),
                line("D1110", "Prophylaxis, adult", 20_000),
            ],
            0,
        ),
    ];
    for (id, patient, issued, lines, paid) in invoices {
        let total: u64 = lines.iter().map(|l| l.amount_cents).sum();
        p.invoices.insert(
            id.into(),
            Invoice {
                id: id.into(),
                patient_id: patient.into(),
                issued_on: issued.into(),
                due_on: calendar::add_days(issued, 30).unwrap_or_else(|| issued.to_owned()),
                status: invoice_status(total, paid).into(),
                lines,
                total_cents: total,
                paid_cents: paid,
            },
        );
    }
    for (id, invoice, patient, amount, method, on) in [
        (
            "pay_5001",
            "inv_4001",
            "pat_1001",
            35_250,
            "card",
            "2026-11-03",
        ),
        (
            "pay_5002",
            "inv_4002",
            "pat_1002",
            9_600,
            "hsa_card",
            "2026-11-10",
        ),
    ] {
        p.payments.insert(
            id.into(),
            Payment {
                id: id.into(),
                invoice_id: invoice.into(),
                patient_id: patient.into(),
                amount_cents: amount,
                method: method.into(),
                received_on: on.into(),
                refunded_cents: 0,
            },
        );
    }
}
