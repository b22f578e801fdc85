//! `spawn_app()`: a real server on port 0 over a temporary data folder, two providers and
//! an operator key; helpers named after requests.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use ward::server::{self, RunningServer, ServerOptions};
use ward_domain::ProviderId;

pub const OPERATOR_KEY: &str = "test-operator-key";

pub struct TestApp {
    pub base_url: String,
    /// PROV001's key.
    pub key: String,
    /// PROV002's key: another tenant.
    pub other_key: String,
    pub http: reqwest::Client,
    pub running: Option<RunningServer>,
    /// Holds the data folder (`data/`) and its key folder beside it (`data-keys/`).
    pub data_dir: tempfile::TempDir,
}

pub struct Options {
    pub api: ward_api::ApiSettings,
    pub ingest: ward_ingest::IngestSettings,
    pub table_layer: Option<ward::shape::TableLayer>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            api: ward_api::ApiSettings::default(),
            ingest: ward_ingest::IngestSettings {
                retry_base: Duration::from_millis(10),
                batch_rows: 64,
                // Ad hoc SQL runs in a child process of the ward binary (this test
                // binary is not one).
                analytics: ward_ports::AnalyticsSettings {
                    sql_sandbox_program: Some(env!("CARGO_BIN_EXE_ward").into()),
                    ..Default::default()
                },
                ..Default::default()
            },
            table_layer: None,
        }
    }
}

/// A server on port 0 over an existing (or new) data folder, with the test operator key.
pub async fn start_server(data_dir: &std::path::Path, options: Options) -> RunningServer {
    server::start(ServerOptions {
        data_dir: data_dir.to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        public_url: None,
        api: options.api,
        ingest: options.ingest,
        operator_key: ward::config::Secret::new(Some(OPERATOR_KEY.into())),
        retention: Default::default(),
        store: Default::default(),
        shape: Default::default(),
        table_layer: options.table_layer,
    })
    .await
    .expect("server starts")
}

/// A test app around a running server, authenticating as `key`.
pub fn app_for(running: RunningServer, key: String) -> TestApp {
    TestApp {
        base_url: running.base_url.clone(),
        other_key: key.clone(),
        key,
        http: reqwest::Client::new(),
        running: Some(running),
        data_dir: tempfile::tempdir().unwrap(),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    let running = start_server(&data_dir.path().join("data"), options).await;
    let table = running.state.table.clone();
    let key = ward_ports::Tenants::new(table.clone())
        .create(&ProviderId::parse("PROV001").unwrap(), None)
        .await
        .unwrap()
        .0;
    let other_key = ward_ports::Tenants::new(table.clone())
        .create(&ProviderId::parse("PROV002").unwrap(), None)
        .await
        .unwrap()
        .0;
    TestApp {
        base_url: running.base_url.clone(),
        key,
        other_key,
        http: reqwest::Client::new(),
        running: Some(running),
        data_dir,
    }
}

impl TestApp {
    /// The key that names `mrn` of `provider` in this server's keys and paths.
    pub fn patient_key(&self, provider: &str, mrn: &str) -> String {
        let running = self.running.as_ref().expect("the server runs");
        running
            .state
            .ctx
            .pseudonyms
            .patient(
                &ProviderId::parse(provider).unwrap(),
                &ward_domain::Mrn::parse(mrn).unwrap(),
            )
            .to_string()
    }

    /// The data folder the server serves.
    pub fn data_path(&self) -> std::path::PathBuf {
        self.data_dir.path().join("data")
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str, key: &str) -> (u16, Value) {
        self.request(reqwest::Method::GET, path, Some(key)).await
    }

    /// A `POST` of a JSON body with a key.
    pub async fn post_json(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `POST /v1/admin/providers` with the operator key.
    pub async fn post_admin_provider(&self, body: Value) -> (u16, Value) {
        self.post_json("/v1/admin/providers", OPERATOR_KEY, body)
            .await
    }

    pub async fn post_upload(&self, key: &str) -> Value {
        let (status, body) = self
            .request(reqwest::Method::POST, "/v1/uploads", Some(key))
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    pub async fn put_file(&self, url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self
            .http
            .put(url)
            .header("content-type", "text/csv")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Asks for a URL, sends the bytes, returns the upload id.
    pub async fn upload(&self, key: &str, csv: &[u8]) -> String {
        let grant = self.post_upload(key).await;
        let (status, body) = self
            .put_file(grant["url"].as_str().unwrap(), csv.to_vec())
            .await;
        assert_eq!(status, 200, "{body}");
        grant["uploadId"].as_str().unwrap().to_owned()
    }

    pub async fn wait_for_upload(&self, upload_id: &str) -> Value {
        self.wait_for_upload_as(upload_id, &self.key).await
    }

    /// Waits for another provider's upload, with that provider's key.
    pub async fn wait_for_upload_as(&self, upload_id: &str, key: &str) -> Value {
        for _ in 0..600 {
            let (status, body) = self.get(&format!("/v1/uploads/{upload_id}"), key).await;
            assert_eq!(status, 200, "{body}");
            if matches!(
                body["status"].as_str(),
                Some("completed" | "failed" | "interrupted")
            ) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("upload {upload_id} did not finish");
    }

    pub async fn upload_and_wait(&self, csv: &[u8]) -> Value {
        let id = self.upload(&self.key.clone(), csv).await;
        self.wait_for_upload(&id).await
    }

    pub async fn get_patient_records(&self, mrn: &str, query: &str) -> (u16, Value) {
        self.get(&format!("/v1/patients/{mrn}/records{query}"), &self.key)
            .await
    }

    /// Stops the server and starts another over the same data folder with `options`.
    pub async fn restart(mut self, options: Options) -> Self {
        if let Some(running) = self.running.take() {
            running.stop().await.unwrap();
        }
        let running = start_server(&self.data_path(), options).await;
        Self {
            base_url: running.base_url.clone(),
            running: Some(running),
            ..self
        }
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await.unwrap();
        }
    }
}

pub const HEADER: &str = "medical_record_number,date_time,first_name,last_name,doctors_notes\n";

pub fn counts(upload: &Value) -> [u64; 5] {
    let c = &upload["report"]["counts"];
    ["rows", "inserted", "duplicate", "conflict", "rejected"].map(|name| c[name].as_u64().unwrap())
}

/// A `ward serve` child process (`command`, given `--listen 127.0.0.1:{port}` here), once
/// it answers `/healthz`; its base URL.
pub async fn serve_child(mut command: std::process::Command) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = command
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            return (child, base);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("ward serve did not start");
}

/// Runs `command` (a `ward keys rotate`) and kills it (SIGKILL) at its first progress
/// line, `re-wrapped...`: in the middle of its re-wrap.
pub fn kill_at_first_rewrap_progress(command: std::process::Command) {
    kill_at_first_line(command, "re-wrapped...");
}

/// Runs `command` and kills it (SIGKILL) as soon as it writes a line holding `marker` on
/// standard error (a progress line: in the middle of its work).
pub fn kill_at_first_line(mut command: std::process::Command, marker: &str) {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while {
        line.clear();
        std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0
    } {
        if line.contains(marker) {
            break;
        }
    }
    assert!(
        line.contains(marker),
        "no `{marker}` before the end: {line}"
    );
    child.kill().unwrap(); // SIGKILL
    assert!(!child.wait().unwrap().success());
}

/// The number printed right after `label` in `text`.
pub fn count_after(text: &str, label: &str) -> u64 {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} in {text}"))
        + label.len();
    text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("a number after {label:?} in {text}"))
}

/// A visit CSV for the erasure crash tests: `visits` visits of MRN1 (a minute apart, so
/// erasing them takes many transactions) and five of MRN2 (who must stay).
pub fn one_large_patient_csv(visits: u32) -> String {
    let mut csv = "medical_record_number,date_time,first_name,last_name,doctors_notes\n".to_owned();
    for minute in 0..visits {
        csv.push_str(&format!(
            "MRN1,2025-03-{:02}T{:02}:{:02}:00Z,Ann,Lee,visit {minute}\n",
            1 + minute / 1440,
            minute / 60 % 24,
            minute % 60
        ));
    }
    for day in 1..=5 {
        csv.push_str(&format!("MRN2,2025-04-0{day}T10:00:00Z,Bo,Ng,visit\n"));
    }
    csv
}
