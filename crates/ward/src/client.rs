//! A real HTTP client of Ward's API, used by `ward upload`, `ward records`, `ward dlq` and
//! the demo: it does exactly what an outside client would.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// A client bound to one server and one key.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: String,
    key: String,
}

impl Client {
    /// A client for `base_url` authenticating with `key`.
    pub fn new(base_url: &str, key: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base_url))?;
        json_or_problem(response).await
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// `POST path` as JSON.
    pub async fn post(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, None).await
    }

    /// A request with extra headers; the status and the body (JSON, or text), whatever
    /// the status.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(&self.key);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base_url))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// Sends bytes as an upload grant says (`url`, `method`, `headers`), without the API
    /// key (the URL is the credential).
    pub async fn put_granted(&self, grant: &Value, bytes: Vec<u8>) -> anyhow::Result<(u16, Value)> {
        let url = grant["url"].as_str().context("the grant has no url")?;
        let mut request = self.http.put(url).body(bytes);
        for (name, value) in grant["headers"].as_object().into_iter().flatten() {
            request = request.header(name.as_str(), value.as_str().unwrap_or_default());
        }
        let response = request
            .send()
            .await
            .context("cannot reach the upload URL")?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// `POST path` with a JSON body, as JSON.
    pub async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Asks for an upload URL and sends the file through it, with a progress bar.
    /// `kind` is `visits` (a CSV) or `facilities` (JSON).
    pub async fn upload_file(
        &self,
        file: &Path,
        kind: &str,
        show_progress: bool,
    ) -> anyhow::Result<String> {
        // The file's own name goes with it (for the audit trail; Ward names the object).
        let mut request = serde_json::json!({ "kind": kind });
        if let Some(name) = file.file_name().and_then(|name| name.to_str()) {
            request["fileName"] = Value::String(name.chars().take(255).collect());
        }
        let grant = self.post_json("/v1/uploads", &request).await?;
        let upload_id = grant["uploadId"]
            .as_str()
            .context("no uploadId in the answer")?
            .to_owned();
        let url = grant["url"].as_str().context("no url in the answer")?;
        let size = tokio::fs::metadata(file)
            .await
            .with_context(|| format!("cannot read {}", file.display()))?
            .len();
        let progress = if show_progress {
            ProgressBar::new(size)
        } else {
            ProgressBar::hidden()
        };
        progress.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        progress.set_message("uploading");
        let handle = tokio::fs::File::open(file).await?;
        let bar = progress.clone();
        let stream = tokio_util::io::ReaderStream::new(handle)
            .inspect_ok(move |chunk| bar.inc(chunk.len() as u64));
        let mut request = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, size);
        if let Some(headers) = grant["headers"].as_object() {
            for (name, value) in headers {
                if let Some(value) = value.as_str() {
                    request = request.header(name.as_str(), value);
                }
            }
        }
        let response = request
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .context("the upload did not complete")?;
        progress.finish_and_clear();
        json_or_problem(response).await?;
        Ok(upload_id)
    }

    /// Polls the upload until it is completed or failed (or `timeout` passes).
    pub async fn wait_for_upload(
        &self,
        upload_id: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let upload = self.get(&format!("/v1/uploads/{upload_id}")).await?;
            if matches!(
                upload["status"].as_str(),
                Some("completed" | "failed" | "interrupted")
            ) {
                return Ok(upload);
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "upload {upload_id} is still {} after {timeout:?}",
                    upload["status"]
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls an analytics run until it is completed or failed (or `timeout` passes).
    pub async fn wait_for_run(&self, run_id: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let run = self.get(&format!("/v1/analytics/runs/{run_id}")).await?;
            if matches!(run["status"].as_str(), Some("completed" | "failed")) {
                return Ok(run);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("run {run_id} is still {} after {timeout:?}", run["status"]);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The upload kind a file's name implies: `.json`, `.jsonl` and `.ndjson` are facilities,
/// anything else visits.
pub fn kind_of_file(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some("json" | "jsonl" | "ndjson") => "facilities",
        _ => "visits",
    }
}

async fn json_or_problem(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        Ok(body)
    } else {
        // Ward answers with problem JSON; S3 (the AWS shape's upload URLs) with XML.
        let detail = match &body {
            Value::String(text) if !text.trim().is_empty() => {
                text.chars().take(300).collect::<String>()
            }
            _ => body["detail"].as_str().unwrap_or("no detail").to_owned(),
        };
        let kind = body["type"].as_str().unwrap_or("unknown");
        bail!("the server answered {status}: {detail} ({kind})")
    }
}
