//! The EMR model's behaviour, written once and run on every adapter of the table port
//! (`emr_suite!` below): the embedded store and DynamoDB Local.

use std::sync::Arc;

use serde_json::{Value, json};
use ward_domain::{ProviderId, UtcInstant};
use ward_emr::{
    Actor, AuditLog, Emr, EmrError, Idempotency, Kind, ListFilter, Stored, Timeline, TimelineEntry,
};
use ward_store::{EXPIRES_AT, Key, Order, Table, Value as Attr};

pub struct Fixture {
    pub emr: Emr,
    pub table: Arc<dyn Table>,
    pub actor: Actor,
    pub other: Actor,
}

fn actor(provider: &str, key: &str) -> Actor {
    Actor {
        request_id: Some("req-1".into()),
        client_address: Some("127.0.0.1".into()),
        ..Actor::provider_wide(
            ProviderId::parse(provider).unwrap(),
            format!("key:{key}"),
            Some(ward_domain::Role::ProviderAdmin),
            "api_key",
        )
    }
}

pub fn fixture(table: Arc<dyn Table>) -> Fixture {
    // Each test has its own providers, so tests can share one table.
    let suffix: u64 = rand::random();
    let pseudonyms = Arc::new(ward_domain::Pseudonyms::new(&rand::random()));
    let emr = Emr::new(
        Arc::clone(&table),
        Arc::clone(&pseudonyms),
        AuditLog::start(Arc::clone(&table), pseudonyms),
    );
    Fixture {
        emr,
        table,
        actor: actor(&format!("P{suffix:x}"), "k1"),
        other: actor(&format!("Q{suffix:x}"), "k9"),
    }
}

pub fn patient_body(mrn: &str, email: Option<&str>, clinic: &str) -> Value {
    let mut body = json!({
        "mrn": mrn, "firstName": "Ann", "lastName": "Lee", "dateOfBirth": "1985-06-15",
        "sex": "FEMALE", "clinic": clinic
    });
    if let Some(email) = email {
        body["email"] = json!(email);
    }
    body
}

fn clinician_body(id: &str, email: &str) -> Value {
    json!({"id": id, "firstName": "Sam", "lastName": "Smith", "email": email,
           "licenceNumber": "QMD12345", "specialization": "Cardiology",
           "workingHours": {"monday": {"start": "08:00", "end": "17:00"}}})
}

fn appointment_body(clinician: &str, start: &str, minutes: i64) -> Value {
    json!({"clinicianId": clinician, "start": start, "durationMinutes": minutes,
           "type": "FOLLOW_UP", "mode": "IN_PERSON"})
}

fn record_body(clinician: &str, date: &str, record_type: &str) -> Value {
    json!({"type": record_type, "clinicianId": clinician, "visit": {"date": date},
           "chiefComplaint": "checkup",
           "diagnoses": [{"code": "I25.9", "description": "Chronic ischemic heart disease"}]})
}

fn filter(limit: usize) -> ListFilter {
    ListFilter {
        limit,
        ..ListFilter::default()
    }
}

fn ids(items: &[Stored]) -> Vec<String> {
    items
        .iter()
        .map(|item| item.representation()["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A timeline page as the API renders it.
fn rendered(timeline: &Timeline) -> Vec<Value> {
    timeline
        .entries
        .iter()
        .map(TimelineEntry::representation)
        .collect()
}

async fn setup_people(f: &Fixture) {
    f.emr
        .create_patient(
            &f.actor,
            &patient_body("MRN1", Some("ann@example.org"), "NORTH"),
            None,
        )
        .await
        .unwrap();
    f.emr
        .create_clinician(&f.actor, &clinician_body("DR1", "dr1@example.org"), None)
        .await
        .unwrap();
}

pub async fn patient_updates_use_optimistic_concurrency(f: Fixture) {
    let created = f
        .emr
        .create_patient(
            &f.actor,
            &patient_body("MRN1", Some("ann@example.org"), "NORTH"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(created.version, 1);
    assert_eq!(created.representation()["mrn"], "MRN1");
    assert!(created.representation()["createdAt"].is_string());
    let read = f.emr.get_patient(&f.actor, "MRN1").await.unwrap();
    assert_eq!(read.representation(), created.representation());

    let patch = json!({"phone": "+14155550123", "address": {"line1": "1 Main St", "city": "Austin", "country": "US"}});
    let updated = f
        .emr
        .update_patient(&f.actor, "MRN1", 1, &patch)
        .await
        .unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.representation()["phone"], "+14155550123");
    assert_eq!(
        updated.representation()["firstName"],
        "Ann",
        "merge keeps the other fields"
    );
    assert_eq!(
        updated.representation()["createdAt"],
        created.representation()["createdAt"]
    );

    // A client still holding version 1 loses.
    let stale = f
        .emr
        .update_patient(&f.actor, "MRN1", 1, &json!({"phone": "+14155550199"}))
        .await;
    assert!(
        matches!(stale, Err(EmrError::PreconditionFailed { current: 2 })),
        "{stale:?}"
    );
    // null removes a field (RFC 7396); the MRN cannot change; bad values are named.
    let removed = f
        .emr
        .update_patient(&f.actor, "MRN1", 2, &json!({"phone": null}))
        .await
        .unwrap();
    assert!(removed.representation().get("phone").is_none());
    let Err(EmrError::Invalid(errors)) = f
        .emr
        .update_patient(
            &f.actor,
            "MRN1",
            3,
            &json!({"mrn": "MRN2", "bloodType": "Z"}),
        )
        .await
    else {
        panic!("an MRN change must be refused");
    };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["mrn"]);
    let Err(EmrError::Invalid(errors)) = f
        .emr
        .update_patient(&f.actor, "MRN1", 3, &json!({"bloodType": "Z", "sex": "?"}))
        .await
    else {
        panic!("invalid values must be refused");
    };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["sex", "bloodType"]);
    assert_eq!(
        f.emr.get_patient(&f.actor, "MRN1").await.unwrap().version,
        3
    );
}

pub async fn one_profile_per_mrn_and_one_owner_per_email_under_concurrency(f: Fixture) {
    let emr = Arc::new(f.emr.clone());
    // Eight requests race for one MRN (each with its own email).
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (emr, actor) = (Arc::clone(&emr), f.actor.clone());
            tokio::spawn(async move {
                emr.create_patient(
                    &actor,
                    &patient_body("MRN7", Some(&format!("p{i}@example.org")), "NORTH"),
                    None,
                )
                .await
            })
        })
        .collect();
    let mut won = 0;
    let mut winner_email = None;
    for task in tasks {
        match task.await.unwrap() {
            Ok(stored) => {
                won += 1;
                winner_email = stored.representation()["email"].as_str().map(str::to_owned);
            }
            Err(EmrError::Conflict(conflict)) => {
                let message = conflict.to_string();
                assert!(message.contains("MRN7"), "{message}")
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1, "exactly one profile per MRN");
    // The losers' emails were not claimed: they are free for others.
    let loser = (0..8)
        .map(|i| format!("p{i}@example.org"))
        .find(|email| Some(email) != winner_email.as_ref())
        .unwrap();
    f.emr
        .create_patient(&f.actor, &patient_body("MRN8", Some(&loser), "NORTH"), None)
        .await
        .expect("a losing request's email is not held");

    // Eight requests race for one email (each with its own MRN), in another case.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (emr, actor) = (Arc::clone(&emr), f.actor.clone());
            tokio::spawn(async move {
                emr.create_patient(
                    &actor,
                    &patient_body(
                        &format!("E{i}"),
                        Some(if i % 2 == 0 {
                            "Shared@Example.org"
                        } else {
                            "shared@example.org"
                        }),
                        "NORTH",
                    ),
                    None,
                )
                .await
            })
        })
        .collect();
    let mut won = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(_) => won.push(i),
            Err(EmrError::Conflict(conflict)) => {
                let message = conflict.to_string();
                assert!(message.contains("email"), "{message}")
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        won.len(),
        1,
        "exactly one owner per email, compared case-insensitively"
    );
    let owner = f
        .emr
        .patient_by_email(&f.actor, "SHARED@example.org")
        .await
        .unwrap();
    assert_eq!(owner.representation()["mrn"], format!("E{}", won[0]));
    // A clinician cannot take a patient's email either.
    let taken = f
        .emr
        .create_clinician(&f.actor, &clinician_body("DR9", "shared@example.org"), None)
        .await;
    assert!(matches!(taken, Err(EmrError::Conflict(_))), "{taken:?}");
}

pub async fn an_email_change_moves_the_claim(f: Fixture) {
    setup_people(&f).await;
    f.emr
        .update_patient(
            &f.actor,
            "MRN1",
            1,
            &json!({"email": "ann.lee@example.org"}),
        )
        .await
        .unwrap();
    assert!(matches!(
        f.emr.patient_by_email(&f.actor, "ann@example.org").await,
        Err(EmrError::NotFound(_))
    ));
    assert_eq!(
        f.emr
            .patient_by_email(&f.actor, "ann.lee@example.org")
            .await
            .unwrap()
            .representation()["mrn"],
        "MRN1"
    );
    // The old address is free again.
    f.emr
        .create_patient(
            &f.actor,
            &patient_body("MRN2", Some("ann@example.org"), "NORTH"),
            None,
        )
        .await
        .unwrap();
    // Taking another's address is refused and changes nothing.
    let taken = f
        .emr
        .update_patient(&f.actor, "MRN2", 1, &json!({"email": "dr1@example.org"}))
        .await;
    assert!(matches!(taken, Err(EmrError::Conflict(_))), "{taken:?}");
    assert_eq!(
        f.emr.get_patient(&f.actor, "MRN2").await.unwrap().version,
        1
    );
}

pub async fn a_clinician_cannot_be_double_booked(f: Fixture) {
    setup_people(&f).await;
    f.emr
        .create_patient(&f.actor, &patient_body("MRN2", None, "NORTH"), None)
        .await
        .unwrap();
    let first = f
        .emr
        .create_child(
            &f.actor,
            Kind::Appointment,
            "MRN1",
            &appointment_body("DR1", "2025-06-16T10:00:00Z", 30),
            None,
        )
        .await
        .unwrap();
    assert_eq!(first.representation()["status"], "SCHEDULED");
    assert_eq!(
        first.representation()["clinic"],
        "NORTH",
        "the clinic defaults to the patient's"
    );
    let first_id = first.representation()["id"].as_str().unwrap().to_owned();
    // Overlapping (10:15 in another offset), for another patient: refused, naming the holder.
    let overlap = f
        .emr
        .create_child(
            &f.actor,
            Kind::Appointment,
            "MRN2",
            &appointment_body("DR1", "2025-06-16T12:15:00+02:00", 30),
            None,
        )
        .await;
    match overlap {
        Err(EmrError::Conflict(conflict)) => {
            let message = conflict.to_string();
            assert!(message.contains(&first_id), "{message}")
        }
        other => panic!("overlap must be refused: {other:?}"),
    }
    // Back to back is fine.
    f.emr
        .create_child(
            &f.actor,
            Kind::Appointment,
            "MRN2",
            &appointment_body("DR1", "2025-06-16T10:30:00Z", 15),
            None,
        )
        .await
        .unwrap();
    // Concurrent overlapping requests: exactly one wins.
    let emr = Arc::new(f.emr.clone());
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let (emr, actor) = (Arc::clone(&emr), f.actor.clone());
            let start = format!("2025-06-16T14:{:02}:00Z", i * 5);
            tokio::spawn(async move {
                emr.create_child(
                    &actor,
                    Kind::Appointment,
                    "MRN1",
                    &appointment_body("DR1", &start, 30),
                    None,
                )
                .await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(EmrError::Conflict(_)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1, "six overlapping bookings, one appointment");
    // Cancelling frees the slot; a cancelled appointment cannot come back.
    let cancelled = f
        .emr
        .update_child(
            &f.actor,
            Kind::Appointment,
            "MRN1",
            &first_id,
            1,
            &json!({"status": "CANCELLED"}),
        )
        .await
        .unwrap();
    assert_eq!(cancelled.representation()["status"], "CANCELLED");
    f.emr
        .create_child(
            &f.actor,
            Kind::Appointment,
            "MRN2",
            &appointment_body("DR1", "2025-06-16T10:00:00Z", 30),
            None,
        )
        .await
        .expect("the freed slot can be booked");
    let back = f
        .emr
        .update_child(
            &f.actor,
            Kind::Appointment,
            "MRN1",
            &first_id,
            2,
            &json!({"status": "SCHEDULED"}),
        )
        .await;
    assert!(matches!(back, Err(EmrError::Conflict(_))), "{back:?}");
    let moved = f
        .emr
        .update_child(
            &f.actor,
            Kind::Appointment,
            "MRN1",
            &first_id,
            2,
            &json!({"start": "2025-06-16T11:00:00Z"}),
        )
        .await;
    assert!(matches!(moved, Err(EmrError::Invalid(_))), "{moved:?}");
    // An unknown clinician or patient is named.
    let nobody = f
        .emr
        .create_child(
            &f.actor,
            Kind::Appointment,
            "MRN1",
            &appointment_body("DR404", "2025-06-17T10:00:00Z", 30),
            None,
        )
        .await;
    assert!(
        matches!(nobody, Err(EmrError::NotFound("the clinician"))),
        "{nobody:?}"
    );
    let no_patient = f
        .emr
        .create_child(
            &f.actor,
            Kind::ClinicalRecord,
            "MRN404",
            &record_body("DR1", "2025-06-01T10:00:00Z", "CONSULTATION"),
            None,
        )
        .await;
    assert!(
        matches!(no_patient, Err(EmrError::NotFound("the patient"))),
        "{no_patient:?}"
    );
}

pub async fn access_patterns_answer_in_time_order_without_scans(f: Fixture) {
    setup_people(&f).await;
    f.emr
        .create_clinician(&f.actor, &clinician_body("DR2", "dr2@example.org"), None)
        .await
        .unwrap();
    for mrn in ["MRN2", "MRN3"] {
        f.emr
            .create_patient(&f.actor, &patient_body(mrn, None, "NORTH"), None)
            .await
            .unwrap();
    }
    f.emr
        .create_patient(&f.actor, &patient_body("MRN4", None, "SOUTH"), None)
        .await
        .unwrap();
    // Records created out of order, in several offsets and types.
    let dates = [
        ("MRN1", "2025-03-01T09:00:00+03:00", "CONSULTATION", "DR1"),
        ("MRN1", "2025-01-15T10:00:00Z", "LAB_RESULT", "DR2"),
        ("MRN1", "2025-02-01T08:00:00-05:00", "CONSULTATION", "DR1"),
        ("MRN2", "2025-02-10T10:00:00Z", "CONSULTATION", "DR1"),
        ("MRN3", "2025-01-20T10:00:00Z", "CONSULTATION", "DR2"),
    ];
    for (mrn, date, record_type, clinician) in dates {
        f.emr
            .create_child(
                &f.actor,
                Kind::ClinicalRecord,
                mrn,
                &record_body(clinician, date, record_type),
                None,
            )
            .await
            .unwrap();
    }
    let mrn1 = f
        .emr
        .list_children(&f.actor, Kind::ClinicalRecord, "MRN1", filter(10))
        .await
        .unwrap();
    let visits: Vec<String> = mrn1
        .items
        .iter()
        .map(|r| {
            r.representation()["visit"]["date"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        visits,
        [
            "2025-01-15T10:00:00Z",
            "2025-02-01T13:00:00Z",
            "2025-03-01T06:00:00Z"
        ]
    );
    // Type and time filters, newest first, paged one at a time.
    let mut filter_consultations = ListFilter {
        item_type: Some("CONSULTATION".into()),
        order: Order::Reverse,
        limit: 1,
        ..ListFilter::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = f
            .emr
            .list_children(
                &f.actor,
                Kind::ClinicalRecord,
                "MRN1",
                filter_consultations.clone(),
            )
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|r| {
            r.representation()["visit"]["date"]
                .as_str()
                .unwrap()
                .to_owned()
        }));
        match page.next {
            Some(next) => filter_consultations.cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["2025-03-01T06:00:00Z", "2025-02-01T13:00:00Z"]);
    let ranged = ListFilter {
        from: Some(UtcInstant::parse_rfc3339("2025-01-20T00:00:00Z").unwrap()),
        to: Some(UtcInstant::parse_rfc3339("2025-02-28T00:00:00Z").unwrap()),
        limit: 10,
        ..ListFilter::default()
    };
    let in_range = f
        .emr
        .list_children(&f.actor, Kind::ClinicalRecord, "MRN1", ranged)
        .await
        .unwrap();
    assert_eq!(in_range.items.len(), 1);

    // A clinician's records (GSI1) span patients.
    let dr1 = f
        .emr
        .clinician_items(&f.actor, Kind::ClinicalRecord, "DR1", filter(10))
        .await
        .unwrap();
    let patients: Vec<String> = dr1
        .items
        .iter()
        .map(|r| {
            r.representation()["patientMrn"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(patients, ["MRN1", "MRN2", "MRN1"]);

    // Records by type across the provider: eight shards merged, paged by two.
    let mut by_type = ListFilter {
        limit: 2,
        ..ListFilter::default()
    };
    let mut all = Vec::new();
    loop {
        let page = f
            .emr
            .by_type(
                &f.actor,
                Kind::ClinicalRecord,
                "CONSULTATION",
                by_type.clone(),
            )
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        all.extend(ids(&page.items));
        match page.next {
            Some(next) => by_type.cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(all.len(), 4);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "time order across shards");

    // Appointments of a clinic's day (local day of the provider's zone; none set = UTC).
    for (mrn, start) in [
        ("MRN2", "2025-06-16T15:00:00Z"),
        ("MRN1", "2025-06-16T09:00:00Z"),
        ("MRN3", "2025-06-17T09:00:00Z"),
    ] {
        f.emr
            .create_child(
                &f.actor,
                Kind::Appointment,
                mrn,
                &appointment_body("DR2", start, 20),
                None,
            )
            .await
            .unwrap();
    }
    let day = f
        .emr
        .clinic_day(&f.actor, "NORTH", "2025-06-16", 10, None)
        .await
        .unwrap();
    let starts: Vec<String> = day
        .items
        .iter()
        .map(|a| a.representation()["start"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(starts, ["2025-06-16T09:00:00Z", "2025-06-16T15:00:00Z"]);
    let dr2 = f
        .emr
        .clinician_items(&f.actor, Kind::Appointment, "DR2", filter(10))
        .await
        .unwrap();
    assert_eq!(dr2.items.len(), 3);

    // Patients of a clinic: shards merged by MRN, paged.
    let mut patients = Vec::new();
    let mut cursor = None;
    loop {
        let page = f
            .emr
            .clinic_patients(&f.actor, "NORTH", 2, cursor.as_deref())
            .await
            .unwrap();
        patients.extend(
            page.items
                .iter()
                .map(|p| p.representation()["mrn"].as_str().unwrap().to_owned()),
        );
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    // In the order of the patients' keys (pseudonyms), not of their MRNs.
    let mut expected = ["MRN1", "MRN2", "MRN3"];
    expected.sort_by_key(|mrn| {
        f.emr
            .pseudonyms()
            .patient(&f.actor.provider, &ward_domain::Mrn::parse(mrn).unwrap())
    });
    assert_eq!(patients, expected);
    let south = f
        .emr
        .clinic_patients(&f.actor, "SOUTH", 10, None)
        .await
        .unwrap();
    assert_eq!(south.items.len(), 1);
}

pub async fn the_timeline_merges_every_kind_including_csv_visits(f: Fixture) {
    setup_people(&f).await;
    // Two visits as the CSV ingest stores them.
    let upload = ward_domain::UploadId::new(UtcInstant::now(), 1);
    for (line, time) in [(2, "2025-01-10T08:00:00Z"), (3, "2025-04-01T08:00:00.500Z")] {
        let row = ward_domain::VisitRow {
            mrn: ward_domain::Mrn::parse("MRN1").unwrap(),
            time: ward_domain::VisitTime::parse(time, None, UtcInstant::now()).unwrap(),
            first_name: "Ann".into(),
            last_name: "Lee".into(),
            doctors_notes: "notes".into(),
        };
        let source = ward_ports::visits::RecordSource {
            provider: &f.actor.provider,
            pseudonyms: f.emr.pseudonyms(),
            upload: &upload,
            csv_file: "x.csv",
            processed_at: "2025-06-01T00:00:00Z",
            file_name: None,
        };
        let item = ward_ports::visits::visit_item(
            (&row).into(),
            &source.patient(&row.mrn),
            line,
            "hash".into(),
            &source,
        );
        f.table
            .put(item, ward_store::Condition::NotExists)
            .await
            .unwrap();
    }
    f.emr
        .create_child(
            &f.actor,
            Kind::ClinicalRecord,
            "MRN1",
            &record_body("DR1", "2025-02-01T08:00:00Z", "CONSULTATION"),
            None,
        )
        .await
        .unwrap();
    f.emr
        .create_child(
            &f.actor,
            Kind::Appointment,
            "MRN1",
            &appointment_body("DR1", "2025-04-01T08:00:00Z", 30),
            None,
        )
        .await
        .unwrap();
    f.emr
        .create_child(&f.actor, Kind::Bill, "MRN1", &json!({"issuedAt": "2025-03-01T00:00:00Z", "amountMinor": 12050, "currency": "USD", "status": "ISSUED",
            "services": [{"code": "99213", "description": "Office visit", "date": "2025-02-01", "amountMinor": 12050}]}), None)
        .await
        .unwrap();
    let expected = ["visit", "clinicalRecord", "bill", "appointment", "visit"];
    for order in [Order::Forward, Order::Reverse] {
        for limit in [1, 2, 10] {
            let mut filter = ListFilter {
                order,
                limit,
                ..ListFilter::default()
            };
            let mut kinds = Vec::new();
            let mut times = Vec::new();
            loop {
                let page = f
                    .emr
                    .timeline(&f.actor, "MRN1", filter.clone())
                    .await
                    .unwrap();
                assert!(page.entries.len() <= limit);
                kinds.extend(
                    page.entries
                        .iter()
                        .map(|e| e.representation()["kind"].as_str().unwrap().to_owned()),
                );
                times.extend(
                    page.entries
                        .iter()
                        .map(|e| e.representation()["at"].as_str().unwrap().to_owned()),
                );
                match page.next {
                    Some(next) => filter.cursor = Some(next),
                    None => break,
                }
            }
            let mut want: Vec<&str> = expected.to_vec();
            if order == Order::Reverse {
                want.reverse();
            }
            assert_eq!(kinds, want, "order {order:?}, pages of {limit}");
            let mut sorted = times.clone();
            sorted.sort();
            if order == Order::Reverse {
                sorted.reverse();
            }
            assert_eq!(times, sorted);
        }
    }
    let from = ListFilter {
        from: Some(UtcInstant::parse_rfc3339("2025-03-01T00:00:00Z").unwrap()),
        limit: 10,
        ..ListFilter::default()
    };
    let later = f.emr.timeline(&f.actor, "MRN1", from).await.unwrap();
    let kinds: Vec<String> = later
        .entries
        .iter()
        .map(|e| e.representation()["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["bill", "appointment", "visit"]);
    assert_eq!(rendered(&later)[2]["item"]["doctorsNotes"], "notes");
}

pub async fn another_provider_sees_nothing(f: Fixture) {
    setup_people(&f).await;
    let record = f
        .emr
        .create_child(
            &f.actor,
            Kind::ClinicalRecord,
            "MRN1",
            &record_body("DR1", "2025-02-01T08:00:00Z", "CONSULTATION"),
            None,
        )
        .await
        .unwrap();
    let id = record.representation()["id"].as_str().unwrap().to_owned();
    let id = id.as_str();
    let o = &f.other;
    assert!(matches!(
        f.emr.get_patient(o, "MRN1").await,
        Err(EmrError::NotFound(_))
    ));
    assert!(matches!(
        f.emr.patient_by_email(o, "ann@example.org").await,
        Err(EmrError::NotFound(_))
    ));
    assert!(matches!(
        f.emr.get_clinician(o, "DR1").await,
        Err(EmrError::NotFound(_))
    ));
    assert!(matches!(
        f.emr.get_child(o, Kind::ClinicalRecord, "MRN1", id).await,
        Err(EmrError::NotFound(_))
    ));
    assert!(matches!(
        f.emr
            .update_patient(o, "MRN1", 1, &json!({"phone": "+14155550123"}))
            .await,
        Err(EmrError::NotFound(_))
    ));
    assert!(matches!(
        f.emr
            .update_child(
                o,
                Kind::ClinicalRecord,
                "MRN1",
                id,
                1,
                &json!({"status": "AMENDED"})
            )
            .await,
        Err(EmrError::NotFound(_))
    ));
    assert!(matches!(
        f.emr
            .create_child(
                o,
                Kind::ClinicalRecord,
                "MRN1",
                &record_body("DR1", "2025-02-01T08:00:00Z", "CONSULTATION"),
                None
            )
            .await,
        Err(EmrError::NotFound(_))
    ));
    assert!(
        f.emr
            .list_children(o, Kind::ClinicalRecord, "MRN1", filter(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        f.emr
            .timeline(o, "MRN1", filter(10))
            .await
            .unwrap()
            .entries
            .is_empty()
    );
    assert!(
        f.emr
            .clinician_items(o, Kind::ClinicalRecord, "DR1", filter(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        f.emr
            .by_type(o, Kind::ClinicalRecord, "CONSULTATION", filter(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        f.emr
            .clinic_patients(o, "NORTH", 10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        f.emr
            .list_clinicians(o, 10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // The other provider may reuse the same MRN and email: nothing is shared.
    f.emr
        .create_patient(
            o,
            &patient_body("MRN1", Some("ann@example.org"), "NORTH"),
            None,
        )
        .await
        .unwrap();
    let now = UtcInstant::now();
    f.emr.audit_log().flush().await;
    let theirs = ward_emr::audit::list(
        f.table.as_ref(),
        &o.provider,
        ward_emr::audit::AuditQuery {
            from: now.plus_seconds(-3600),
            to: now.plus_seconds(60),
            patient: None,
            actor: None,
            limit: 100,
            cursor: None,
        },
    )
    .await
    .unwrap();
    assert!(
        theirs.events.iter().all(|e| e["actor"] == "key:k9"),
        "only their own events"
    );
    assert!(
        theirs.events.iter().any(|e| e["result"] == "NOT_FOUND"),
        "refusals are audited"
    );
}

pub async fn every_read_and_write_is_audited(f: Fixture) {
    let start = UtcInstant::now();
    setup_people(&f).await;
    f.emr.get_patient(&f.actor, "MRN1").await.unwrap();
    f.emr
        .update_patient(&f.actor, "MRN1", 1, &json!({"bloodType": "A+"}))
        .await
        .unwrap();
    let _ = f
        .emr
        .update_patient(&f.actor, "MRN1", 1, &json!({"bloodType": "B+"}))
        .await;
    let reader = Actor {
        actor: "key:k2".into(),
        ..f.actor.clone()
    };
    f.emr
        .list_children(&reader, Kind::ClinicalRecord, "MRN1", filter(5))
        .await
        .unwrap();
    f.emr.audit_log().flush().await;
    let end = UtcInstant::now().plus_seconds(1);
    let all = ward_emr::audit::list(
        f.table.as_ref(),
        &f.actor.provider,
        ward_emr::audit::AuditQuery {
            from: start.plus_seconds(-1),
            to: end,
            patient: None,
            actor: None,
            limit: 100,
            cursor: None,
        },
    )
    .await
    .unwrap();
    let actions: Vec<(String, String, String)> = all
        .events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().into(),
                e["resourceType"].as_str().unwrap().into(),
                e["result"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected_newest_first = [
        ("LIST", "CLINICAL_RECORD", "SUCCESS"),
        ("UPDATE", "PATIENT", "PRECONDITION_FAILED"),
        ("UPDATE", "PATIENT", "SUCCESS"),
        ("READ", "PATIENT", "SUCCESS"),
        ("CREATE", "CLINICIAN", "SUCCESS"),
        ("CREATE", "PATIENT", "SUCCESS"),
    ];
    let expected: Vec<(String, String, String)> = expected_newest_first
        .iter()
        .map(|(a, r, o)| ((*a).into(), (*r).into(), (*o).into()))
        .collect();
    assert_eq!(actions, expected);
    let first = &all.events[5];
    assert_eq!(first["patient"], "MRN1");
    assert_eq!(first["resourceId"], "MRN1");
    assert_eq!(first["requestId"], "req-1");
    assert_eq!(first["clientAddress"], "127.0.0.1");
    assert!(
        !first.to_string().contains("Ann"),
        "no patient data in events: {first}"
    );
    // Filters: by actor, by patient; paging newest first.
    let by_reader = ward_emr::audit::list(
        f.table.as_ref(),
        &f.actor.provider,
        ward_emr::audit::AuditQuery {
            from: start.plus_seconds(-1),
            to: end,
            patient: None,
            actor: Some("key:k2".into()),
            limit: 100,
            cursor: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(by_reader.events.len(), 1);
    let about = ward_emr::audit::list(
        f.table.as_ref(),
        &f.actor.provider,
        ward_emr::audit::AuditQuery {
            from: start.plus_seconds(-1),
            to: end,
            patient: Some("MRN1".into()),
            actor: None,
            limit: 100,
            cursor: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(about.events.len(), 5, "{:?}", about.events);
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let page = ward_emr::audit::list(
            f.table.as_ref(),
            &f.actor.provider,
            ward_emr::audit::AuditQuery {
                from: start.plus_seconds(-1),
                to: end,
                patient: None,
                actor: None,
                limit: 4,
                cursor: cursor.as_deref().map(str::to_owned),
            },
        )
        .await
        .unwrap();
        paged.extend(page.events);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(paged, all.events);
}

pub async fn idempotency_keys_replay_and_expire(f: Fixture) {
    setup_people(&f).await;
    let bill = json!({"issuedAt": "2025-03-01T00:00:00Z", "amountMinor": 500, "currency": "EUR", "status": "ISSUED"});
    let key = Idempotency {
        key: "order-42".into(),
        fingerprint: "A".into(),
    };
    let first = f
        .emr
        .create_child(&f.actor, Kind::Bill, "MRN1", &bill, Some(&key))
        .await
        .unwrap();
    let again = f
        .emr
        .create_child(&f.actor, Kind::Bill, "MRN1", &bill, Some(&key))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.representation()["id"], first.representation()["id"]);
    assert_eq!(
        f.emr
            .list_children(&f.actor, Kind::Bill, "MRN1", filter(10))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let other = Idempotency {
        key: "order-42".into(),
        fingerprint: "B".into(),
    };
    assert!(matches!(
        f.emr
            .create_child(&f.actor, Kind::Bill, "MRN1", &bill, Some(&other))
            .await,
        Err(EmrError::Conflict(_))
    ));
    // Another provider's identical key is its own.
    f.emr
        .create_patient(&f.other, &patient_body("MRN1", None, "NORTH"), None)
        .await
        .unwrap();
    let theirs = f
        .emr
        .create_child(&f.other, Kind::Bill, "MRN1", &bill, Some(&key))
        .await
        .unwrap();
    assert!(!theirs.replayed);
    // Once expired (even before the store removes it) the key is absent.
    let idem_key = Key::new(
        ward_domain::key_layout::idempotency_pk(&f.actor.provider, &hex_sha256("order-42")),
        ward_domain::key_layout::IDEMPOTENCY_SK,
    );
    let mut item = f.table.get(&idem_key).await.unwrap().expect("stored");
    assert!(
        item.get(EXPIRES_AT).and_then(Attr::as_i64).unwrap()
            > UtcInstant::now().unix_seconds() + 23 * 3600
    );
    item.insert(
        EXPIRES_AT.into(),
        Attr::n(UtcInstant::now().unix_seconds() - 1),
    );
    f.table
        .put(item, ward_store::Condition::None)
        .await
        .unwrap();
    let fresh = f
        .emr
        .create_child(&f.actor, Kind::Bill, "MRN1", &bill, Some(&key))
        .await
        .unwrap();
    assert!(!fresh.replayed);
    assert_ne!(fresh.representation()["id"], first.representation()["id"]);
}

pub async fn a_pending_document_expires_and_a_checked_one_is_indexed(f: Fixture) {
    setup_people(&f).await;
    let body = json!({"type": "ECG_REPORT", "title": "12-lead ECG", "fileName": "ecg.pdf",
        "mediaType": "application/pdf", "sizeBytes": 3, "sha256": "a".repeat(64)});
    let pending = f
        .emr
        .create_child(&f.actor, Kind::Document, "MRN1", &body, None)
        .await
        .unwrap();
    assert_eq!(pending.representation()["status"], "PENDING_UPLOAD");
    let id = pending.representation()["id"].as_str().unwrap().to_owned();
    let by_type = f
        .emr
        .by_type(&f.actor, Kind::Document, "ECG_REPORT", filter(10))
        .await
        .unwrap();
    assert!(
        by_type.items.is_empty(),
        "not listed before its file is checked"
    );
    let available = f
        .emr
        .document_status(
            &f.actor,
            "MRN1",
            &id,
            &[ward_emr::model::DocumentStatus::PendingUpload],
            ward_emr::model::DocumentStatus::Available,
            None,
        )
        .await
        .unwrap();
    assert_eq!(available.representation()["status"], "AVAILABLE");
    let by_type = f
        .emr
        .by_type(&f.actor, Kind::Document, "ECG_REPORT", filter(10))
        .await
        .unwrap();
    assert_eq!(ids(&by_type.items), std::slice::from_ref(&id));
    let item = f
        .emr
        .child_item(&f.actor, Kind::Document, "MRN1", &id)
        .await
        .unwrap();
    assert!(
        !item.contains_key(EXPIRES_AT),
        "a checked document does not expire"
    );

    let second = f
        .emr
        .create_child(&f.actor, Kind::Document, "MRN1", &body, None)
        .await
        .unwrap();
    let second_id = second.representation()["id"].as_str().unwrap().to_owned();
    let mut item = f
        .emr
        .child_item(&f.actor, Kind::Document, "MRN1", &second_id)
        .await
        .unwrap();
    assert!(item.contains_key(EXPIRES_AT), "an upload session expires");
    item.insert(
        EXPIRES_AT.into(),
        Attr::n(UtcInstant::now().unix_seconds() - 1),
    );
    f.table
        .put(item, ward_store::Condition::None)
        .await
        .unwrap();
    assert!(matches!(
        f.emr
            .get_child(&f.actor, Kind::Document, "MRN1", &second_id)
            .await,
        Err(EmrError::NotFound(_))
    ));
    let listed = f
        .emr
        .list_children(&f.actor, Kind::Document, "MRN1", filter(10))
        .await
        .unwrap();
    assert_eq!(ids(&listed.items), [id]);
}

pub async fn a_patients_appointments_documents_and_bills_list_by_time_type_and_status(f: Fixture) {
    setup_people(&f).await;
    let mut appointment_ids = Vec::new();
    for start in [
        "2025-06-18T09:00:00Z",
        "2025-06-16T09:00:00Z",
        "2025-06-17T09:00:00Z",
    ] {
        let made = f
            .emr
            .create_child(
                &f.actor,
                Kind::Appointment,
                "MRN1",
                &appointment_body("DR1", start, 15),
                None,
            )
            .await
            .unwrap();
        appointment_ids.push(made.representation()["id"].as_str().unwrap().to_owned());
    }
    f.emr
        .update_child(
            &f.actor,
            Kind::Appointment,
            "MRN1",
            &appointment_ids[2],
            1,
            &json!({"status": "CANCELLED"}),
        )
        .await
        .unwrap();
    let all = f
        .emr
        .list_children(&f.actor, Kind::Appointment, "MRN1", filter(10))
        .await
        .unwrap();
    let starts: Vec<String> = all
        .items
        .iter()
        .map(|a| a.representation()["start"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        starts,
        [
            "2025-06-16T09:00:00Z",
            "2025-06-17T09:00:00Z",
            "2025-06-18T09:00:00Z"
        ]
    );
    let scheduled = ListFilter {
        status: Some("SCHEDULED".into()),
        order: Order::Reverse,
        limit: 10,
        ..ListFilter::default()
    };
    let scheduled = f
        .emr
        .list_children(&f.actor, Kind::Appointment, "MRN1", scheduled)
        .await
        .unwrap();
    let starts: Vec<String> = scheduled
        .items
        .iter()
        .map(|a| a.representation()["start"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(starts, ["2025-06-18T09:00:00Z", "2025-06-16T09:00:00Z"]);
    let follow_ups = ListFilter {
        item_type: Some("FOLLOW_UP".into()),
        from: Some(UtcInstant::parse_rfc3339("2025-06-17T00:00:00Z").unwrap()),
        limit: 10,
        ..ListFilter::default()
    };
    let later = f
        .emr
        .list_children(&f.actor, Kind::Appointment, "MRN1", follow_ups)
        .await
        .unwrap();
    assert_eq!(later.items.len(), 2);

    for (document_type, title) in [
        ("LAB_REPORT", "labs"),
        ("IMAGING", "x-ray"),
        ("LAB_REPORT", "more labs"),
    ] {
        let body = json!({"type": document_type, "title": title, "fileName": "f.pdf",
            "mediaType": "application/pdf", "sizeBytes": 10, "sha256": "b".repeat(64)});
        f.emr
            .create_child(&f.actor, Kind::Document, "MRN1", &body, None)
            .await
            .unwrap();
    }
    let labs = ListFilter {
        item_type: Some("LAB_REPORT".into()),
        limit: 10,
        ..ListFilter::default()
    };
    let labs = f
        .emr
        .list_children(&f.actor, Kind::Document, "MRN1", labs)
        .await
        .unwrap();
    let titles: Vec<String> = labs
        .items
        .iter()
        .map(|d| d.representation()["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(titles, ["labs", "more labs"]);

    for issued in [
        "2025-01-01T00:00:00Z",
        "2025-03-01T00:00:00Z",
        "2025-05-01T00:00:00Z",
    ] {
        let body =
            json!({"issuedAt": issued, "amountMinor": 100, "currency": "USD", "status": "ISSUED"});
        f.emr
            .create_child(&f.actor, Kind::Bill, "MRN1", &body, None)
            .await
            .unwrap();
    }
    let spring = ListFilter {
        from: Some(UtcInstant::parse_rfc3339("2025-02-01T00:00:00Z").unwrap()),
        to: Some(UtcInstant::parse_rfc3339("2025-05-01T00:00:00Z").unwrap()),
        limit: 10,
        ..ListFilter::default()
    };
    let bills = f
        .emr
        .list_children(&f.actor, Kind::Bill, "MRN1", spring)
        .await
        .unwrap();
    let issued: Vec<String> = bills
        .items
        .iter()
        .map(|b| b.representation()["issuedAt"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        issued,
        ["2025-03-01T00:00:00Z", "2025-05-01T00:00:00Z"],
        "both ends inclusive"
    );
}

fn hex_sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// Row-level rules: a clinician reaches a patient by a care relation (an appointment
/// with it) or by an unexpired break-glass grant, whose reason its events then carry; a
/// patient its own record only.
pub async fn a_clinician_reaches_the_patients_it_cares_for_and_others_through_break_glass_for_a_while(
    f: Fixture,
) {
    use ward_domain::{ClinicianId, Link, Mrn, Role, key_layout};
    for mrn in ["M1", "M2"] {
        f.emr
            .create_patient(&f.actor, &patient_body(mrn, None, "NORTH"), None)
            .await
            .unwrap();
    }
    f.emr
        .create_clinician(&f.actor, &clinician_body("C1", "c1@example.org"), None)
        .await
        .unwrap();
    let clinician = Actor {
        actor: "user:c1".into(),
        role: Some(Role::Clinician),
        link: Link::Clinician(ClinicianId::parse("C1").unwrap()),
        sign_in: "password",
        ..f.actor.clone()
    };
    let absent = |result: Result<Stored, EmrError>| matches!(result, Err(EmrError::NotFound(_)));
    assert!(absent(f.emr.get_patient(&clinician, "M1").await));
    // A grant that has expired opens nothing.
    let mut stale = ward_store::Item::new();
    let provider = f.actor.provider.clone();
    let m1 = Mrn::parse("M1").unwrap();
    stale.insert(
        ward_store::PK.into(),
        Attr::s(key_layout::patient_pk(
            &provider,
            &f.emr.pseudonyms().patient(&provider, &m1),
        )),
    );
    stale.insert(
        ward_store::SK.into(),
        Attr::s(key_layout::emergency_sk(&ClinicianId::parse("C1").unwrap())),
    );
    stale.insert("reason".into(), Attr::s("an old emergency"));
    stale.insert(
        EXPIRES_AT.into(),
        Attr::n(UtcInstant::now().unix_seconds() - 5),
    );
    f.table
        .put(stale, ward_store::Condition::None)
        .await
        .unwrap();
    assert!(absent(f.emr.get_patient(&clinician, "M1").await));
    // Break-glass: M1 opens, with the reason on the actor; M2 stays closed.
    let reason = "patient unconscious in the emergency room";
    let grant = f
        .emr
        .break_glass(&clinician, "M1", reason, 60)
        .await
        .unwrap();
    assert_eq!(grant.clinician_id, "C1");
    let admitted = f.emr.admit(&clinician, "M1").await.unwrap();
    assert_eq!(admitted.emergency.as_deref(), Some(reason));
    assert!(f.emr.get_patient(&clinician, "M1").await.is_ok());
    assert!(absent(f.emr.get_patient(&clinician, "M2").await));
    // Only a clinician opens a grant, and only with a reason.
    assert!(matches!(
        f.emr.break_glass(&f.actor, "M2", reason, 60).await,
        Err(EmrError::Invalid(_))
    ));
    assert!(matches!(
        f.emr.break_glass(&clinician, "M2", "   ", 60).await,
        Err(EmrError::Invalid(_))
    ));
    assert!(matches!(
        f.emr.break_glass(&clinician, "M404", reason, 60).await,
        Err(EmrError::NotFound(_))
    ));
    // The administrator's list: newest first, a page at a time.
    for mrn in ["M3", "M4"] {
        f.emr
            .create_patient(&f.actor, &patient_body(mrn, None, "NORTH"), None)
            .await
            .unwrap();
        f.emr
            .break_glass(&clinician, mrn, reason, 60)
            .await
            .unwrap();
    }
    let (first, next) = f
        .emr
        .break_glass_sessions(&provider, 2, None)
        .await
        .unwrap();
    let (rest, last) = f
        .emr
        .break_glass_sessions(&provider, 2, next.as_deref())
        .await
        .unwrap();
    let listed: Vec<&str> = first
        .iter()
        .chain(&rest)
        .map(|grant| grant.mrn.as_str())
        .collect();
    assert_eq!(listed, ["M4", "M3", "M1"]);
    assert!(next.is_some() && last.is_none());
    // An appointment with C1 (booked by the front desk) relates M2 to it: no emergency.
    f.emr
        .create_child(
            &f.actor,
            Kind::Appointment,
            "M2",
            &appointment_body("C1", "2031-03-03T10:00:00Z", 30),
            None,
        )
        .await
        .unwrap();
    let admitted = f.emr.admit(&clinician, "M2").await.unwrap();
    assert_eq!(admitted.emergency, None);
    let mine = f
        .emr
        .clinician_patients(&clinician, "C1", 10, None)
        .await
        .unwrap();
    assert_eq!(ids(&mine.items), ["M2"]);
    assert!(matches!(
        f.emr.clinician_patients(&clinician, "C2", 10, None).await,
        Err(EmrError::NotFound(_))
    ));
    // The other provider's clinician of the same id reaches nothing here.
    let stranger = Actor {
        provider: f.other.provider.clone(),
        ..clinician.clone()
    };
    assert!(absent(f.emr.get_patient(&stranger, "M2").await));
    // A patient: its own record, no other.
    let patient = Actor {
        actor: "user:m1".into(),
        role: Some(Role::Patient),
        link: Link::Patient(m1.clone()),
        ..f.actor.clone()
    };
    assert!(f.emr.get_patient(&patient, "M1").await.is_ok());
    assert!(absent(f.emr.get_patient(&patient, "M2").await));
    assert!(
        f.emr
            .list_children(&patient, Kind::Appointment, "M2", filter(10))
            .await
            .is_err()
    );
}

/// Every scenario as a `#[tokio::test]` on the table `$open` makes.
#[macro_export]
macro_rules! emr_suite {
    ($open:expr) => {
        $crate::emr_suite!(@tests $open;
            patient_updates_use_optimistic_concurrency,
            one_profile_per_mrn_and_one_owner_per_email_under_concurrency,
            an_email_change_moves_the_claim,
            a_clinician_cannot_be_double_booked,
            access_patterns_answer_in_time_order_without_scans,
            a_patients_appointments_documents_and_bills_list_by_time_type_and_status,
            the_timeline_merges_every_kind_including_csv_visits,
            another_provider_sees_nothing,
            every_read_and_write_is_audited,
            idempotency_keys_replay_and_expire,
            a_pending_document_expires_and_a_checked_one_is_indexed,
            a_clinician_reaches_the_patients_it_cares_for_and_others_through_break_glass_for_a_while,
        );
    };
    (@tests $open:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (table, _guard) = $open;
                let table: std::sync::Arc<dyn ward_store::Table> = std::sync::Arc::new(table);
                $crate::scenarios::$name($crate::scenarios::fixture(table)).await;
            }
        )*
    };
}
