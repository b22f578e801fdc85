//! What requests do to the store, seen through a table layer that records (or fails)
//! every call: no request path scans or leaves the caller's partitions; an EMR change and
//! its audit event are one transaction; a store failure answers a 5xx that says nothing
//! internal, and no log line of it (or of a failing ingest) carries patient data.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use reqwest::Method;
use serde_json::json;
use ward::shape::TableLayer;
use ward_store::{
    Condition, Item, Key, Page, PutOutcome, Query, StoreError, Table, Value, WriteOp,
};

use crate::helpers::{HEADER, Options, TestApp, spawn_app_with};

/// One store call as recorded: the method and every partition key it touched.
#[derive(Debug, Clone)]
struct Call {
    method: &'static str,
    pks: Vec<String>,
    limit: Option<usize>,
    items: Vec<Item>,
}

/// When the wrapped table fails a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    None,
    /// Reads of a partition whose key holds this text fail as corrupt.
    ReadsOf(&'static str),
    /// Every transactional write fails (the store is unavailable).
    Transactions,
    /// Every ingest batch write fails.
    Ingest,
}

struct RecordingTable {
    inner: Arc<dyn Table>,
    calls: Arc<Mutex<Vec<Call>>>,
    failure: Arc<Mutex<Failure>>,
}

impl RecordingTable {
    fn record(
        &self,
        method: &'static str,
        pks: Vec<String>,
        limit: Option<usize>,
        items: Vec<Item>,
    ) {
        self.calls.lock().unwrap().push(Call {
            method,
            pks,
            limit,
            items,
        });
    }

    fn failure(&self) -> Failure {
        *self.failure.lock().unwrap()
    }

    fn read_fails(&self, pk: &str) -> Result<(), StoreError> {
        match self.failure() {
            Failure::ReadsOf(text) if pk.contains(text) => Err(StoreError::Internal(
                "the stored item is unreadable (bad codec tag 0x7f)".into(),
            )),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Table for RecordingTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.record("get", vec![key.pk.clone()], None, Vec::new());
        self.read_fails(&key.pk)?;
        self.inner.get(key).await
    }

    async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError> {
        let pk = item
            .get("PK")
            .and_then(Value::as_s)
            .unwrap_or_default()
            .to_owned();
        self.record("put", vec![pk], None, vec![item.clone()]);
        self.inner.put(item, condition).await
    }

    async fn delete(&self, key: &Key, condition: Condition) -> Result<(), StoreError> {
        self.record("delete", vec![key.pk.clone()], None, Vec::new());
        self.inner.delete(key, condition).await
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        self.record(
            "query",
            vec![query.pk.clone()],
            Some(query.limit),
            Vec::new(),
        );
        self.read_fails(&query.pk)?;
        self.inner.query(query).await
    }

    async fn batch_get(&self, keys: Vec<Key>) -> Result<Vec<Item>, StoreError> {
        let pks = keys.iter().map(|key| key.pk.clone()).collect();
        self.record("batch_get", pks, None, Vec::new());
        for key in &keys {
            self.read_fails(&key.pk)?;
        }
        self.inner.batch_get(keys).await
    }

    async fn transact_write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        let items: Vec<Item> = ops
            .iter()
            .filter_map(|op| match op {
                WriteOp::Put { item, .. } => Some(item.clone()),
                _ => None,
            })
            .collect();
        let pks = items
            .iter()
            .filter_map(|item| item.get("PK").and_then(Value::as_s).map(str::to_owned))
            .collect();
        self.record("transact_write", pks, None, items);
        if self.failure() == Failure::Transactions {
            return Err(StoreError::Unavailable("throttled".into()));
        }
        self.inner.transact_write(ops).await
    }

    async fn put_many_if_absent(&self, items: Vec<Item>) -> Result<Vec<PutOutcome>, StoreError> {
        let pks = items
            .iter()
            .filter_map(|item| item.get("PK").and_then(Value::as_s).map(str::to_owned))
            .collect();
        self.record("put_many_if_absent", pks, None, Vec::new());
        if self.failure() == Failure::Ingest {
            return Err(StoreError::Internal("write transaction aborted".into()));
        }
        self.inner.put_many_if_absent(items).await
    }

    fn prefers_key_order(&self) -> bool {
        self.inner.prefers_key_order()
    }
}

struct Recorded {
    app: TestApp,
    calls: Arc<Mutex<Vec<Call>>>,
    failure: Arc<Mutex<Failure>>,
}

async fn spawn_recorded(mut options: Options) -> Recorded {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let failure = Arc::new(Mutex::new(Failure::None));
    let (layer_calls, layer_failure) = (Arc::clone(&calls), Arc::clone(&failure));
    options.table_layer = Some(TableLayer(Arc::new(move |inner| {
        Arc::new(RecordingTable {
            inner,
            calls: Arc::clone(&layer_calls),
            failure: Arc::clone(&layer_failure),
        }) as Arc<dyn Table>
    })));
    let app = spawn_app_with(options).await;
    Recorded {
        app,
        calls,
        failure,
    }
}

impl Recorded {
    fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    fn fail(&self, failure: Failure) {
        *self.failure.lock().unwrap() = failure;
    }
}

async fn send_json(app: &TestApp, method: Method, path: &str, body: serde_json::Value) -> u16 {
    app.http
        .request(method, format!("{}{path}", app.base_url))
        .bearer_auth(&app.key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn patient_body() -> serde_json::Value {
    json!({"mrn": "MRN1", "firstName": "Annabel", "lastName": "Quist", "dateOfBirth": "1980-04-02",
           "sex": "FEMALE", "clinic": "NORTH", "email": "annabel@example.org"})
}

#[tokio::test]
async fn no_request_path_scans_or_leaves_the_callers_partitions() {
    let recorded = spawn_recorded(Options::default()).await;
    let app = &recorded.app;
    let csv = format!("{HEADER}MRN1,2025-03-26T10:30:00Z,Annabel,Quist,a note\n");
    let upload = app.upload_and_wait(csv.as_bytes()).await;
    let upload_id = upload["uploadId"].as_str().unwrap().to_owned();
    assert_eq!(
        send_json(app, Method::POST, "/v1/patients", patient_body()).await,
        201
    );
    let clinician = json!({"id": "DR1", "firstName": "Sam", "lastName": "Smith", "email": "dr1@example.org",
                           "licenceNumber": "L1", "specialization": "Cardiology"});
    assert_eq!(
        send_json(app, Method::POST, "/v1/clinicians", clinician).await,
        201
    );
    // Every GET route of a provider, with its parameters filled in.
    for (method, path) in ward_api::ROUTES {
        let provider_route = path.starts_with("/v1/")
            && !path.starts_with("/v1/admin/")
            && !path.contains("-objects/")
            && *path != "/v1/openapi.json";
        if *method != "get" || !provider_route {
            continue;
        }
        let concrete = path
            .replace("{uploadId}", &upload_id)
            .replace("{mrn}", "MRN1")
            .replace("{runId}", "20250101T000000Z-0000000000000000")
            .replace("{file}", "per_state.json")
            .replace("{id}", "20250101T000000Z-0000000000000000")
            .replace("{clinic}", "NORTH");
        recorded.take_calls();
        let (status, body) = app.get(&concrete, &app.key).await;
        assert!(status < 500, "{path}: {status} {body}");
        let calls = recorded.take_calls();
        assert!(!calls.is_empty(), "{path} read nothing");
        for call in &calls {
            // Reads are key lookups or queries of one partition, each a bounded page;
            // the port has no scan, so a read names its partition. (Writes are the read
            // audit's, some of them written in the background as batches.)
            assert!(
                matches!(
                    call.method,
                    "get" | "batch_get" | "query" | "put" | "transact_write" | "put_many_if_absent"
                ),
                "{path}: {call:?}"
            );
            if call.method == "query" {
                assert!(
                    call.limit.is_some_and(|limit| limit <= 1000),
                    "{path}: {call:?}"
                );
            }
            for pk in &call.pks {
                assert!(
                    pk == "PROV#PROV001" || pk.starts_with("PROV#PROV001#"),
                    "{path} touched a partition outside its provider: {pk}"
                );
            }
        }
        assert!(calls.len() <= 400, "{path}: {} store calls", calls.len());
    }
    recorded.app.stop().await;
}

#[tokio::test]
async fn an_emr_change_and_its_audit_event_are_one_transaction() {
    let recorded = spawn_recorded(Options::default()).await;
    let app = &recorded.app;
    recorded.take_calls();
    assert_eq!(
        send_json(app, Method::POST, "/v1/patients", patient_body()).await,
        201
    );
    let writes: Vec<Call> = recorded
        .take_calls()
        .into_iter()
        .filter(|call| call.method != "get" && call.method != "query" && call.method != "batch_get")
        .collect();
    // The profile and its CREATE audit event in one transactional write, and no other
    // write carries either.
    let entity_of = |item: &Item| item.get("entity").and_then(Value::as_s).map(str::to_owned);
    let together: Vec<&Call> = writes
        .iter()
        .filter(|call| {
            call.items
                .iter()
                .any(|item| entity_of(item).as_deref() == Some("PATIENT"))
        })
        .collect();
    assert_eq!(together.len(), 1, "{writes:?}");
    assert_eq!(together[0].method, "transact_write");
    assert!(
        together[0]
            .pks
            .iter()
            .any(|pk| pk.starts_with("PROV#PROV001#AUDIT#")),
        "the audit event is in the same transaction: {:?}",
        together[0].pks
    );
    // When that transaction fails, neither is stored.
    recorded.fail(Failure::Transactions);
    let mut other = patient_body();
    other["mrn"] = json!("MRN2");
    other["email"] = json!("other@example.org");
    let status = send_json(app, Method::POST, "/v1/patients", other).await;
    assert_eq!(status, 503);
    recorded.fail(Failure::None);
    let (status, _) = app.get("/v1/patients/MRN2", &app.key).await;
    assert_eq!(status, 404, "no profile without its audit event");
    crate::emr::flush_audit(app).await;
    let (_, audit) = app.get("/v1/audit?patient=MRN2", &app.key).await;
    let creates = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["action"] == "CREATE")
        .count();
    assert_eq!(creates, 0, "no audit event without its change: {audit}");
    recorded.app.stop().await;
}

/// Log lines written in this process (nextest runs each test in its own process).
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn store_failures_answer_nothing_internal_and_log_no_patient_data() {
    let logs = LogBuffer::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_writer(logs.clone())
            .finish(),
    )
    .unwrap();
    let mut options = Options::default();
    options.ingest.max_attempts = 2;
    let recorded = spawn_recorded(options).await;
    let app = &recorded.app;
    assert_eq!(
        send_json(app, Method::POST, "/v1/patients", patient_body()).await,
        201
    );
    let csv = format!("{HEADER}MRN1,2025-03-26T10:30:00Z,Annabel,Quist,feels dizzy after meals\n");
    app.upload_and_wait(csv.as_bytes()).await;
    // A read the store cannot answer: 500, and the body says nothing of why.
    // (The patient's partition, named by its pseudonym.)
    recorded.fail(Failure::ReadsOf("#PAT#"));
    for path in [
        "/v1/patients/MRN1",
        "/v1/patients/MRN1/records",
        "/v1/patients/MRN1/timeline",
    ] {
        let response = app
            .http
            .get(format!("{}{path}", app.base_url))
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 500, "{path}");
        let body = response.text().await.unwrap();
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["detail"], "internal error", "{path}: {body}");
        for secret in ["codec", "0x7f", "unreadable", "MRN1", "PAT#", "Annabel"] {
            assert!(!body.contains(secret), "{path} answered {body}");
        }
    }
    recorded.fail(Failure::None);
    // An ingest whose writes fail: retried, then dead-lettered.
    recorded.fail(Failure::Ingest);
    let csv = format!("{HEADER}MRN7,2025-04-01T09:00:00Z,Bartholomew,Zeller,chest pain at night\n");
    let failed = app.upload_and_wait(csv.as_bytes()).await;
    assert_eq!(failed["status"], "interrupted", "{failed}");
    recorded.fail(Failure::None);
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("request failed"), "the 500s were logged");
    assert!(logs.contains("job failed"), "the ingest failure was logged");
    for patient_data in [
        "MRN1",
        "MRN7",
        "Annabel",
        "Quist",
        "Bartholomew",
        "Zeller",
        "dizzy",
        "chest pain",
        "annabel@example.org",
        "1980-04-02",
    ] {
        assert!(
            !logs.contains(patient_data),
            "the log holds {patient_data:?}:\n{}",
            logs.lines()
                .filter(|line| line.contains(patient_data))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    recorded.app.stop().await;
}
