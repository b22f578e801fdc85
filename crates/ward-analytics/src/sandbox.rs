//! Ad hoc SQL in a child process with limits of its own, so that no SQL text a provider
//! sends can hurt the server or another provider.
//!
//! Why a child process: Rust aborts the whole process when an allocation fails, and
//! DataFusion's memory pool accounts for operator state (hash tables, sorts) but not for
//! the values scalar functions build (`repeat(x, 8e9)`, `array_repeat`, huge literals).
//! Only an address space of its own bounds those. The child (`ward sql-sandbox`, see
//! [`child_main`]) reads one request and the provider's dataset file on standard input,
//! limits its own data segment (`RLIMIT_DATA`), CPU time, file size (zero: it writes no
//! file, so nothing spills anywhere) and core dumps, lowers its priority, runs the query
//! on one thread and writes one answer on standard output. The server kills it at the
//! query timeout or on shutdown; a child that ran out of memory aborts alone and the
//! query answers "needs more memory than allowed".
//!
//! Admission ([`SqlGate`]) bounds the queries running at once, per provider and in all,
//! so one provider's queries cannot take every core from the others.
//!
//! Owns: the child's protocol, its limits, admission and cancellation. Deliberately does
//! not: decide what SQL is allowed (`engine::check_read_only`, the session's options).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use ward_domain::ProviderId;
use ward_ports::{AnalyticsSettings, SqlAnswer, SqlError};

/// The subcommand of the `ward` binary that runs [`child_main`].
pub const SANDBOX_SUBCOMMAND: &str = "sql-sandbox";

/// Memory the child may add, besides the query's own pool and the dataset's room, to what
/// it holds when it sets its limit: the query runtime, the session, their threads.
const CHILD_BASE_BYTES: usize = 256 * 1024 * 1024;

/// The largest answer read back from a child (10,000 rows of wide JSON fit easily).
const MAX_ANSWER_BYTES: u64 = 64 * 1024 * 1024;

/// Where ad hoc SQL runs.
#[derive(Debug, Clone, Default)]
pub enum SqlIsolation {
    /// In this process: for the engine's own tests and benchmarks. A query that allocates
    /// past what the machine has aborts the process, so a server never runs this way.
    #[default]
    InProcess,
    /// In a child process: this program, run as `PROGRAM sql-sandbox`.
    ChildProcess(PathBuf),
}

/// What the child is asked (the first line of its standard input; the dataset file's
/// bytes follow).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxRequest {
    /// The query (already checked to be one read-only SELECT).
    pub sql: String,
    /// The most rows to answer.
    pub max_rows: usize,
    /// The dataset file's name below the provider's dataset prefix.
    pub dataset_name: String,
    /// The query's time limit.
    pub query_timeout_ms: u64,
    /// The query's memory pool.
    pub query_memory_bytes: usize,
    /// The settings' row cap.
    pub max_sql_rows: usize,
}

/// What the child answers (one JSON document on standard output).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum SandboxAnswer {
    Answer(SqlAnswer),
    Refused(String),
    Invalid(String),
    Timeout(u64),
    Internal(String),
}

/// Admission of ad hoc queries: at most `per_provider` running for one provider and
/// `global` in all; past either, a query is refused at once as busy (it does not queue,
/// so waiting queries cannot pile up). Also the cancellation of every running query.
#[derive(Debug)]
pub struct SqlGate {
    per_provider: usize,
    global: Arc<Semaphore>,
    global_limit: usize,
    running: Mutex<HashMap<ProviderId, usize>>,
    cancel: CancellationToken,
}

impl Default for SqlGate {
    fn default() -> Self {
        let defaults = AnalyticsSettings::default();
        Self::new(defaults.max_sql_per_provider, defaults.max_sql_queries)
    }
}

/// A running query's place; it leaves when dropped.
#[derive(Debug)]
pub struct Admitted<'a> {
    gate: &'a SqlGate,
    provider: ProviderId,
    _global: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let mut running = self
            .gate
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = running.get_mut(&self.provider) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.provider);
            }
        }
    }
}

impl SqlGate {
    /// A gate with these limits (each at least 1).
    pub fn new(per_provider: usize, global: usize) -> Self {
        let global = global.max(1);
        Self {
            per_provider: per_provider.max(1),
            global: Arc::new(Semaphore::new(global)),
            global_limit: global,
            running: Mutex::new(HashMap::new()),
            cancel: CancellationToken::new(),
        }
    }

    /// Admits one query of `provider`, or says why not.
    pub fn admit(&self, provider: &ProviderId) -> Result<Admitted<'_>, SqlError> {
        if self.cancel.is_cancelled() {
            return Err(SqlError::Unavailable);
        }
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mine = running.get(provider).copied().unwrap_or_default();
        if mine >= self.per_provider {
            return Err(SqlError::Busy(format!(
                "{mine} of your queries are running (the limit is {}); wait for one to finish",
                self.per_provider
            )));
        }
        let permit = self.global.try_acquire().map_err(|_| {
            SqlError::Busy(format!(
                "the server is running its limit of {} queries; try again shortly",
                self.global_limit
            ))
        })?;
        *running.entry(provider.clone()).or_default() += 1;
        Ok(Admitted {
            gate: self,
            provider: provider.clone(),
            _global: permit,
        })
    }

    /// Ends every running query and refuses new ones (graceful shutdown).
    pub fn cancel_all(&self) {
        self.cancel.cancel();
    }

    /// Resolves when [`SqlGate::cancel_all`] was called.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }
}

/// Runs `request` over `dataset` in a child process of `program`, within the settings'
/// time limit; the child is killed at the limit or when the gate is cancelled.
pub async fn run_in_child(
    program: &std::path::Path,
    request: &SandboxRequest,
    dataset: bytes::Bytes,
    settings: &AnalyticsSettings,
    gate: &SqlGate,
) -> Result<SqlAnswer, SqlError> {
    let memory_limit = child_memory_limit(request.query_memory_bytes, dataset.len());
    let mut child = tokio::process::Command::new(program)
        .arg(SANDBOX_SUBCOMMAND)
        // Nothing of the server's environment (keys, settings) reaches the child.
        .env_clear()
        .env("WARD_SANDBOX_MEMORY_BYTES", memory_limit.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| SqlError::Internal(format!("cannot start the SQL sandbox: {error}")))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| SqlError::Internal("the SQL sandbox has no input".into()))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| SqlError::Internal("the SQL sandbox has no output".into()))?;
    let mut header = serde_json::to_vec(request)
        .map_err(|error| SqlError::Internal(format!("sandbox request: {error}")))?;
    header.push(b'\n');
    let exchange = async {
        // A child that dies early closes its input: the write fails and the exit status
        // below says why.
        let written = async {
            stdin.write_all(&header).await?;
            stdin.write_all(&dataset).await?;
            stdin.shutdown().await
        }
        .await;
        drop(stdin);
        let mut answer = Vec::new();
        let read = (&mut stdout)
            .take(MAX_ANSWER_BYTES + 1)
            .read_to_end(&mut answer)
            .await;
        if answer.len() as u64 > MAX_ANSWER_BYTES {
            // It would block writing the rest: the answer is refused anyway.
            let _ = child.start_kill();
        }
        let status = child.wait().await;
        (written, read, answer, status)
    };
    // The child keeps its own time, but a query busy on its one thread may not look at
    // the clock: the server kills it just after the limit.
    let limit = settings.query_timeout + Duration::from_millis(250);
    let (written, read, answer, status) = tokio::select! {
        outcome = tokio::time::timeout(limit, exchange) => match outcome {
            Ok(outcome) => outcome,
            // The child is killed when dropped (kill_on_drop).
            Err(_) => return Err(SqlError::Timeout(settings.query_timeout.as_secs())),
        },
        () = gate.cancelled() => return Err(SqlError::Unavailable),
    };
    let status = status.map_err(|error| SqlError::Internal(format!("the SQL sandbox: {error}")))?;
    let too_large = answer.len() as u64 > MAX_ANSWER_BYTES;
    if !status.success() && !too_large {
        return Err(died(status, request.query_memory_bytes, settings));
    }
    if too_large {
        return Err(SqlError::Refused(format!(
            "the answer is larger than {} MiB; select fewer or smaller columns",
            MAX_ANSWER_BYTES >> 20
        )));
    }
    if let Err(error) = written.and(read.map(|_| ())) {
        return Err(SqlError::Internal(format!("the SQL sandbox: {error}")));
    }
    match serde_json::from_slice::<SandboxAnswer>(&answer) {
        Ok(SandboxAnswer::Answer(answer)) => Ok(answer),
        Ok(SandboxAnswer::Refused(reason)) => Err(SqlError::Refused(reason)),
        Ok(SandboxAnswer::Invalid(reason)) => Err(SqlError::Invalid(reason)),
        Ok(SandboxAnswer::Timeout(seconds)) => Err(SqlError::Timeout(seconds)),
        Ok(SandboxAnswer::Internal(reason)) => Err(SqlError::Internal(reason)),
        Err(error) => Err(SqlError::Internal(format!(
            "the SQL sandbox answered something unreadable: {error}"
        ))),
    }
}

/// What a child may map on top of what it holds when it limits itself: the query's pool,
/// the dataset, and the rest.
fn child_memory_limit(query_memory_bytes: usize, dataset_bytes: usize) -> usize {
    query_memory_bytes
        .saturating_add(dataset_bytes.saturating_mul(4))
        .saturating_add(CHILD_BASE_BYTES)
}

/// Why a child ended without an answer.
fn died(
    status: std::process::ExitStatus,
    query_memory_bytes: usize,
    settings: &AnalyticsSettings,
) -> SqlError {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        match status.signal() {
            // SIGXCPU, or SIGKILL after the hard RLIMIT_CPU: it ran past its CPU time.
            Some(24 | 9) => return SqlError::Timeout(settings.query_timeout.as_secs()),
            // SIGABRT: an allocation failed (Rust aborts), or SIGSEGV on a stack or
            // mapping it could not grow: the query asked for more than it may have.
            Some(6 | 11) => {
                return SqlError::Refused(format!(
                    "the query needs more memory than allowed (about {} MiB); aggregate, filter or limit it",
                    query_memory_bytes >> 20
                ));
            }
            _ => {}
        }
    }
    if status.code() == Some(101) {
        // A panic: within the sandbox's limits that is a thread or buffer that could not
        // be had (the engine panics where an allocation it asked the system for fails).
        return SqlError::Refused(format!(
            "the query could not run within the sandbox's limits (about {} MiB of memory); aggregate, filter or limit it",
            query_memory_bytes >> 20
        ));
    }
    tracing::warn!(%status, "the SQL sandbox failed");
    SqlError::Internal(format!("the SQL sandbox failed ({status})"))
}

/// `ward sql-sandbox`: reads one [`SandboxRequest`] line and the dataset file's bytes on
/// standard input, applies its limits to itself, answers on standard output. Exits 0 when
/// it wrote an answer (which may be a refusal), non-zero when it could not.
pub fn child_main() -> std::process::ExitCode {
    let memory_limit = std::env::var("WARD_SANDBOX_MEMORY_BYTES")
        .ok()
        .and_then(|text| text.parse::<u64>().ok());
    let mut input = std::io::stdin().lock();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match input.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) if line.len() < 1024 * 1024 => line.push(byte[0]),
            _ => return std::process::ExitCode::from(2),
        }
    }
    let Ok(request) = serde_json::from_slice::<SandboxRequest>(&line) else {
        return std::process::ExitCode::from(2);
    };
    let mut dataset = Vec::new();
    if input.read_to_end(&mut dataset).is_err() {
        return std::process::ExitCode::from(2);
    }
    if limit_self(memory_limit, request.query_timeout_ms).is_err() {
        return std::process::ExitCode::from(3);
    }
    let answer = answer_request(&request, dataset.into());
    let Ok(json) = serde_json::to_vec(&answer) else {
        return std::process::ExitCode::from(4);
    };
    let mut output = std::io::stdout().lock();
    if output
        .write_all(&json)
        .and_then(|()| output.flush())
        .is_err()
    {
        return std::process::ExitCode::from(5);
    }
    std::process::ExitCode::SUCCESS
}

fn answer_request(request: &SandboxRequest, dataset: bytes::Bytes) -> SandboxAnswer {
    let settings = AnalyticsSettings {
        query_timeout: Duration::from_millis(request.query_timeout_ms),
        max_sql_rows: request.max_sql_rows,
        query_memory_bytes: request.query_memory_bytes,
        ..AnalyticsSettings::default()
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return SandboxAnswer::Internal(format!("sandbox runtime: {error}")),
    };
    runtime.block_on(async {
        // One partition: a query uses one core whatever it asks for.
        let session =
            match crate::engine::session_over_bytes(&request.dataset_name, dataset, &settings, 1)
                .await
            {
                Ok(session) => session,
                Err(error) => return SandboxAnswer::Internal(error.to_string()),
            };
        match crate::engine::answer(&session, &request.sql, request.max_rows, &settings).await {
            Ok(answer) => SandboxAnswer::Answer(answer),
            Err(SqlError::Refused(reason)) => SandboxAnswer::Refused(reason),
            Err(SqlError::Invalid(reason)) => SandboxAnswer::Invalid(reason),
            Err(SqlError::Timeout(seconds)) => SandboxAnswer::Timeout(seconds),
            Err(other) => SandboxAnswer::Internal(other.to_string()),
        }
    })
}

/// The child's limits on itself: its data segment (what it holds now and `memory_bytes`
/// more: the `ward` binary's allocator, mimalloc, maps a 1 GiB arena writable at start,
/// overcommitted and mostly unused, so an absolute limit below that left no room for any
/// later mapping, a thread's stack or a large value, and a trivial query could die for
/// "memory" when it needed one), CPU time (a backstop behind the server's kill at the timeout), no file writes,
/// no core dump; and a lower priority than the server's own work.
#[cfg(unix)]
fn limit_self(memory_bytes: Option<u64>, timeout_ms: u64) -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, nice, setrlimit};
    let limit = |value: u64| Rlimit {
        current: Some(value),
        maximum: Some(value),
    };
    if let Some(bytes) = memory_bytes {
        setrlimit(
            Resource::Data,
            limit(data_segment_bytes().saturating_add(bytes)),
        )?;
    }
    setrlimit(Resource::Cpu, limit(timeout_ms.div_ceil(1000) + 5))?;
    setrlimit(Resource::Fsize, limit(0))?;
    setrlimit(Resource::Core, limit(0))?;
    nice(10)?;
    Ok(())
}

/// The data segment this process holds now (`VmData`; 0 where the system does not say).
#[cfg(unix)]
fn data_segment_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("VmData:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

#[cfg(not(unix))]
fn limit_self(_memory_bytes: Option<u64>, _timeout_ms: u64) -> std::io::Result<()> {
    Err(std::io::Error::other("the SQL sandbox needs a Unix system"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(name: &str) -> ProviderId {
        ProviderId::parse(name).unwrap()
    }

    #[test]
    fn admission_is_limited_per_provider_and_in_all() {
        let gate = SqlGate::new(1, 2);
        let a = gate.admit(&provider("PROVA")).unwrap();
        assert!(matches!(
            gate.admit(&provider("PROVA")),
            Err(SqlError::Busy(reason)) if reason.contains("your queries")
        ));
        let b = gate.admit(&provider("PROVB")).unwrap();
        assert!(matches!(
            gate.admit(&provider("PROVC")),
            Err(SqlError::Busy(reason)) if reason.contains("the server")
        ));
        drop(a);
        let again = gate.admit(&provider("PROVA")).unwrap();
        drop((again, b));
        assert!(gate.running.lock().unwrap().is_empty());
        gate.cancel_all();
        assert!(matches!(
            gate.admit(&provider("PROVA")),
            Err(SqlError::Unavailable)
        ));
    }
}
