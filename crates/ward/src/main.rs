//! `ward`: parses arguments and calls the library. See `ward --help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use ward::client::Client;
use ward::config::{Secret, Settings};
use ward::{bench, demo, embedded, local_ingest, server, synthetic};
use ward_domain::ProviderId;

// mimalloc: glibc's per-thread arenas grew the ingest's peak RSS by ~80 MiB and its
// malloc/free took ~20% of ingest CPU (docs/benchmarks.md). Built with `no_thp`: with
// transparent huge pages, a 1M-row ingest peaked 20-40 MiB higher at the same speed.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "ward",
    version,
    about = "Patient-record intake: pre-signed CSV uploads, exactly-once ingest, records in time order"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args, Clone)]
struct DataDir {
    /// The data folder (store file and objects).
    #[arg(long, env = "WARD_DATA_DIR", default_value = "ward-data")]
    data_dir: PathBuf,
}

#[derive(Debug, Args, Clone)]
struct Remote {
    /// The server's base URL.
    #[arg(long, env = "WARD_URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// API key (provider commands) or operator key (dlq).
    #[arg(long, env = "WARD_KEY")]
    key: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API and the worker over a data folder. Flags and WARD_* variables override
    /// the settings file; without either, the defaults need no configuration.
    Serve {
        /// A TOML settings file (see README).
        #[arg(long, env = "WARD_CONFIG")]
        config: Option<PathBuf>,
        /// The data folder [default: ward-data].
        #[arg(long, env = "WARD_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long, env = "WARD_LISTEN")]
        listen: Option<SocketAddr>,
        /// Base URL clients reach this server at (for upload links).
        #[arg(long, env = "WARD_PUBLIC_URL")]
        public_url: Option<String>,
        /// Largest accepted upload, in bytes [default: 1 GiB].
        #[arg(long, env = "WARD_MAX_UPLOAD_BYTES")]
        max_upload_bytes: Option<u64>,
    },
    /// Run only the worker (no HTTP API): in the AWS shape it long-polls SQS; in the
    /// embedded shape it works the data folder's queue (no server may hold the folder).
    Worker {
        /// A TOML settings file (see README and docs/deploy-aws.md).
        #[arg(long, env = "WARD_CONFIG")]
        config: Option<PathBuf>,
        /// The data folder (embedded shape) [default: ward-data].
        #[arg(long, env = "WARD_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Start a server on a fresh data folder, upload a generated CSV through it, show the
    /// report and a patient's records, and keep serving.
    Demo {
        /// Data folder (default: a fresh one under the temp dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Address to listen on (a free port if taken).
        #[arg(long, env = "WARD_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Rows to generate.
        #[arg(long, default_value_t = 3000)]
        rows: u64,
        /// Stop after showing the results instead of serving.
        #[arg(long)]
        exit: bool,
    },
    /// Manage providers (offline: the data folder must not be served at the same time).
    Tenant {
        #[command(subcommand)]
        action: TenantAction,
    },
    /// Manage built-in users (offline: the data folder must not be served at the same
    /// time; a running server has the /v1/users routes).
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Encrypt, in place, a data folder that a Ward before encryption at rest wrote
    /// (offline; resumable: after an interruption, run it again).
    Migrate(ward::migrate::Args),
    /// The keys that seal patient data at rest (docs/encryption.md; offline, like `user`).
    Keys {
        #[command(subcommand)]
        action: ward::keys_cli::Action,
    },
    /// Upload a file through the API (a pre-signed URL), with a progress bar: a visit CSV,
    /// or facilities as JSON (.json, .jsonl, .ndjson).
    Upload {
        /// The file.
        file: PathBuf,
        #[command(flatten)]
        remote: Remote,
        /// `visits` or `facilities` [default: from the file's extension].
        #[arg(long)]
        kind: Option<String>,
        /// Return as soon as the file is sent, without waiting for the report.
        #[arg(long)]
        no_wait: bool,
    },
    /// Ingest a CSV straight into a data folder (no server), with a progress bar. Uploads
    /// an earlier run left unfinished (killed, crashed) are finished first.
    Ingest {
        /// The CSV file (omit to only finish interrupted uploads).
        file: Option<PathBuf>,
        /// The provider the records belong to (created if missing).
        #[arg(long)]
        provider: String,
        #[command(flatten)]
        data: DataDir,
        /// A TOML settings file (see README): its [ingest] and [store] sections apply.
        #[arg(long, env = "WARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print a patient's records in time order.
    Records {
        /// The medical record number.
        mrn: String,
        #[command(flatten)]
        remote: Remote,
        /// Newest first.
        #[arg(long)]
        desc: bool,
    },
    /// Print everything filed for a patient in time order: CSV visits, appointments,
    /// clinical records, documents, bills.
    Timeline {
        /// The medical record number.
        mrn: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// The dead-letter queue (operator key).
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Facility analytics on a server: run the standard queries, or ad hoc SQL.
    Analytics {
        #[command(subcommand)]
        action: AnalyticsAction,
    },
    /// Generate deterministic synthetic data.
    Gen {
        #[command(subcommand)]
        what: GenWhat,
    },
    /// Benchmarks (build with --release).
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Debug, Subcommand)]
enum TenantAction {
    /// Create a provider; prints its API key (once) as the last line.
    Create {
        /// Provider id (letters, digits, _ and -).
        id: String,
        /// IANA time zone for date_time values without an offset.
        #[arg(long)]
        time_zone: Option<String>,
        #[command(flatten)]
        data: DataDir,
    },
    /// Issue a new key and revoke the old ones; prints the key as the last line.
    Rotate {
        /// Provider id.
        id: String,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Debug, Subcommand)]
enum UserAction {
    /// Create a user who signs in with a password (POST /v1/login); prints a generated
    /// password (once) unless --password-stdin gives one.
    Create {
        /// The user id: its sign-in name (letters, digits, ., _ and -).
        user: String,
        /// The provider it belongs to.
        #[arg(long)]
        provider: String,
        /// provider_admin, clinician, front_desk, billing or patient.
        #[arg(long)]
        role: String,
        /// The clinician id a clinician acts as.
        #[arg(long)]
        clinician: Option<String>,
        /// The MRN of a patient.
        #[arg(long)]
        mrn: Option<String>,
        /// Read the password (one line, at least 12 characters) from standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Debug, Subcommand)]
enum DlqAction {
    /// List dead-lettered jobs.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Put a dead-lettered job back in the queue.
    Replay {
        /// The job id (from `ward dlq list`).
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Subcommand)]
enum AnalyticsAction {
    /// Run the standard queries now, wait, and print each result's summary and rows.
    Run {
        /// The run date (YYYY-MM-DD) [default: today, UTC].
        #[arg(long)]
        as_of: Option<String>,
        /// Horizon of the expiring-accreditations query, in months.
        #[arg(long, default_value_t = 6)]
        months: u32,
        #[command(flatten)]
        remote: Remote,
    },
    /// One read-only SELECT over your tables `facilities` and `accreditations`; prints
    /// the rows as JSON lines.
    Sql {
        /// The query.
        sql: String,
        /// Most rows to return (1-10000).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Subcommand)]
enum GenWhat {
    /// An EMR demo dataset (clinicians, patients, appointments, clinical records, bills,
    /// documents), loaded into a running server through its API.
    Emr {
        /// Patients (MRN0000000 upwards, the MRNs `gen records` uses).
        #[arg(long, default_value_t = 50)]
        patients: u64,
        /// Clinicians.
        #[arg(long, default_value_t = 5)]
        clinicians: u64,
        /// Random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[command(flatten)]
        remote: Remote,
    },
    /// A facility file (JSON lines), as providers upload for analytics.
    Facilities {
        /// Facilities.
        #[arg(long, default_value_t = 1_000)]
        count: u64,
        /// Random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A visit CSV.
    Records {
        /// Data rows.
        #[arg(long, default_value_t = 10_000)]
        rows: u64,
        /// Random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Share of bad rows (0.0-1.0).
        #[arg(long, default_value_t = 0.01)]
        bad_share: f64,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum BenchWhat {
    /// Facility analytics: the per-state and expiring queries from the JSON file and from
    /// the Parquet dataset, with DuckDB as the yardstick (needs --features analytics).
    Analytics {
        /// Facilities to generate.
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
        /// Working folder (the generated file is kept and reused there).
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
    /// What authorization costs: patient-records p50/p99 in process and over HTTP with a
    /// full API key, an administrator's token and a clinician's token.
    Access {
        /// Rows to ingest.
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
        /// Working folder (default: a fresh one under the temp dir).
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
    /// What the audit trail costs: ingest throughput and patient-read latency with audit
    /// on and off.
    Audit {
        /// Rows to ingest (each mode, twice).
        #[arg(long, default_value_t = 200_000)]
        rows: u64,
        /// Patients in the read benchmark's store.
        #[arg(long, default_value_t = 5_000)]
        patients: u64,
        /// Working folder (default: a fresh one under the temp dir).
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
    /// Ingest and query benchmark, with DuckDB as the yardstick.
    Ingest {
        /// Rows to generate and load.
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// First loads sealed and as many sealing nothing, alternating, to compare.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=20))]
        pairs: u64,
        /// Working folder (default: a fresh one under the temp dir).
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    // `ward sql-sandbox` is the child process that runs one ad hoc SQL query for a server
    // (ward_analytics::sandbox): it starts before, and without, the server's runtime and
    // logging, and is no command for people, so it is not in `--help`.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "sql-sandbox")
    {
        return ward::analytics_cli::sql_sandbox();
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(async_main()),
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn async_main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WARD_LOG")
                .unwrap_or_else(|_| "warn,ward=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

impl From<AnalyticsAction> for ward::analytics_cli::Action {
    fn from(action: AnalyticsAction) -> Self {
        match action {
            AnalyticsAction::Run {
                as_of,
                months,
                remote,
            } => Self::Run {
                as_of,
                months,
                server: remote.server,
                key: remote.key,
            },
            AnalyticsAction::Sql { sql, limit, remote } => Self::Sql {
                sql,
                limit,
                server: remote.server,
                key: remote.key,
            },
        }
    }
}

fn provider_id(text: &str) -> anyhow::Result<ProviderId> {
    ProviderId::parse(text).map_err(|e| anyhow::anyhow!("provider id {text:?} {e}"))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            listen,
            public_url,
            max_upload_bytes,
        } => {
            serve(
                config,
                data_dir,
                listen,
                public_url,
                max_upload_bytes,
                false,
            )
            .await
        }
        Command::Worker { config, data_dir } => {
            serve(config, data_dir, None, None, None, true).await
        }
        Command::Demo {
            data_dir,
            listen,
            rows,
            exit,
        } => {
            demo::run(demo::DemoOptions {
                data_dir,
                listen,
                rows,
                exit,
            })
            .await
        }
        Command::Tenant { action } => {
            let (id, data) = match &action {
                TenantAction::Create { id, data, .. } | TenantAction::Rotate { id, data } => {
                    (id, data)
                }
            };
            let provider = provider_id(id)?;
            let embedded = embedded::open(
                &data.data_dir,
                Default::default(),
                &Settings::default().embedded_store(),
            )
            .await?;
            let key = match &action {
                TenantAction::Create { time_zone, .. } => {
                    let zone = time_zone
                        .as_deref()
                        .map(ward_domain::time::ProviderTimeZone::parse)
                        .transpose()
                        .map_err(|e| anyhow::anyhow!(e))?;
                    ward_ports::Tenants::new(embedded.table.clone())
                        .create(&provider, zone.as_ref())
                        .await
                }
                TenantAction::Rotate { .. } => {
                    ward_ports::Tenants::new(embedded.table.clone())
                        .issue_full_key(&provider, true)
                        .await
                }
            }
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("provider {provider}: API key (shown once, stored hashed):");
            println!("{}", key.0);
            Ok(())
        }
        Command::Keys { action } => ward::keys_cli::run(action).await,
        Command::Migrate(args) => ward::migrate::run(args).await,
        Command::User {
            action:
                UserAction::Create {
                    user,
                    provider,
                    role,
                    clinician,
                    mrn,
                    password_stdin,
                    data,
                },
        } => {
            let new = ward::users_cli::NewUser {
                provider: &provider,
                user: &user,
                role: &role,
                clinician: clinician.as_deref(),
                mrn: mrn.as_deref(),
                password_stdin,
            };
            let generated = ward::users_cli::create(&data.data_dir, &new).await?;
            println!("user {user} of {provider} created as {role}");
            if let Some(password) = generated {
                println!("password (shown once, stored as an Argon2id hash):");
                println!("{password}");
            }
            Ok(())
        }
        Command::Upload {
            file,
            remote,
            kind,
            no_wait,
        } => {
            let client = Client::new(&remote.server, &remote.key);
            let kind = kind.unwrap_or_else(|| ward::client::kind_of_file(&file).to_owned());
            let upload_id = client.upload_file(&file, &kind, true).await?;
            println!("uploaded {} as upload {upload_id}", file.display());
            if !no_wait {
                let upload = client
                    .wait_for_upload(&upload_id, Duration::from_secs(3600))
                    .await?;
                println!(
                    "{}: {}",
                    upload["status"].as_str().unwrap_or("?"),
                    ward::counts_line(&upload["report"])
                );
                if let Some(failure) = upload["report"]["failure"].as_str() {
                    println!("failure: {failure}");
                }
                if let Some(run) = upload["report"]["analyticsRun"].as_str() {
                    println!("analytics run {run} started (ward analytics run shows results)");
                }
            }
            Ok(())
        }
        Command::Ingest {
            file,
            provider,
            data,
            config,
        } => {
            let provider = provider_id(&provider)?;
            let file_settings = Settings::load(config.as_deref())?;
            // A local file: no upload size limit applies.
            let settings = ward_ingest::IngestSettings {
                max_file_bytes: u64::MAX,
                ..file_settings.ingest()
            };
            let embedded =
                embedded::open(&data.data_dir, settings, &file_settings.embedded_store()).await?;
            if local_ingest::ensure_provider(&embedded.ctx, &provider).await? {
                eprintln!(
                    "provider {provider} did not exist: created (ward tenant rotate {provider} issues an API key)"
                );
            }
            for (upload, elapsed) in
                local_ingest::resume_unfinished(&embedded.ctx, &provider, true).await?
            {
                eprintln!("finished interrupted upload {}", upload.id);
                print_summary(&upload, elapsed);
            }
            if let Some(file) = file {
                let (upload, elapsed) =
                    local_ingest::ingest_file(&embedded.ctx, &provider, &file, true).await?;
                print_summary(&upload, elapsed);
            }
            Ok(())
        }
        Command::Timeline { mrn, remote } => {
            let client = Client::new(&remote.server, &remote.key);
            ward::emr_cli::print_timeline(&client, &mrn).await
        }
        Command::Records { mrn, remote, desc } => {
            let client = Client::new(&remote.server, &remote.key);
            let order = if desc { "desc" } else { "asc" };
            let mut cursor: Option<String> = None;
            loop {
                let mut path = format!("/v1/patients/{mrn}/records?order={order}&limit=500");
                if let Some(cursor) = &cursor {
                    path.push_str(&format!("&cursor={cursor}"));
                }
                let page = client.get(&path).await?;
                for record in page["records"].as_array().into_iter().flatten() {
                    println!("{}", serde_json::to_string(record)?);
                }
                match page["nextCursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => return Ok(()),
                }
            }
        }
        Command::Dlq { action } => match action {
            DlqAction::List { remote } => {
                let dead = Client::new(&remote.server, &remote.key)
                    .get("/v1/admin/dlq")
                    .await?;
                println!("{}", serde_json::to_string_pretty(&dead)?);
                Ok(())
            }
            DlqAction::Replay { id, remote } => {
                let answer = Client::new(&remote.server, &remote.key)
                    .post(&format!("/v1/admin/dlq/{id}/replay"))
                    .await?;
                println!("{}", serde_json::to_string(&answer)?);
                Ok(())
            }
        },
        Command::Analytics { action } => ward::analytics_cli::run(action.into()).await,
        Command::Gen {
            what:
                GenWhat::Emr {
                    patients,
                    clinicians,
                    seed,
                    remote,
                },
        } => {
            let spec = ward_emr::generate::EmrSpec {
                patients,
                clinicians,
                seed,
            };
            ward::emr_cli::run(&remote.server, &remote.key, spec).await
        }
        Command::Gen {
            what: GenWhat::Facilities { count, seed, out },
        } => ward::analytics_cli::generate(count, seed, out.as_deref()),
        Command::Gen {
            what:
                GenWhat::Records {
                    rows,
                    seed,
                    bad_share,
                    out,
                },
        } => {
            let spec = synthetic::RecordSpec {
                rows,
                seed,
                bad_share,
            };
            match out {
                Some(path) => {
                    let file = std::fs::File::create(&path)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    synthetic::write_records(&spec, std::io::BufWriter::new(file))
                }
                None => synthetic::write_records(
                    &spec,
                    std::io::BufWriter::new(std::io::stdout().lock()),
                ),
            }
        }
        Command::Bench {
            what: BenchWhat::Analytics { count, work_dir },
        } => ward::analytics_cli::bench(count, work_dir).await,
        Command::Bench {
            what:
                BenchWhat::Ingest {
                    rows,
                    pairs,
                    work_dir,
                },
        } => bench::ingest(rows, pairs as usize, work_dir).await,
        Command::Bench {
            what:
                BenchWhat::Audit {
                    rows,
                    patients,
                    work_dir,
                },
        } => bench::audit(rows, patients, work_dir).await,
        Command::Bench {
            what: BenchWhat::Access { rows, work_dir },
        } => ward::bench_access::access(rows, work_dir).await,
    }
}

async fn serve(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    public_url: Option<String>,
    max_upload_bytes: Option<u64>,
    worker_only: bool,
) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref())?;
    let shape = ward::shape::Shape::from_settings(&settings)?;
    let mut api = settings.api()?;
    if let Some(max) = max_upload_bytes {
        api.max_upload_bytes = max;
    }
    let options = server::ServerOptions {
        data_dir: data_dir
            .or(settings.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("ward-data")),
        listen: listen
            .or(settings.listen)
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))),
        public_url: public_url.or(settings.public_url.clone()),
        api,
        ingest: settings.ingest(),
        operator_key: Secret::new(std::env::var("WARD_OPERATOR_KEY").ok()),
        store: settings.embedded_store(),
        retention: settings.retention(),
        shape,
        table_layer: None,
    };
    if worker_only {
        return server::run_worker(options).await;
    }
    let running = server::start(options).await?;
    println!("ward serving at {}", running.base_url);
    if let Some(key) = &running.new_operator_key {
        println!("operator key (shown once; set WARD_OPERATOR_KEY to choose your own): {key}");
    }
    running.run_until_signal().await
}

fn print_summary(upload: &ward_ports::Upload, elapsed: Duration) {
    let Some(report) = &upload.report else { return };
    let counts = &report.counts;
    let rate = counts.rows as f64 / elapsed.as_secs_f64().max(1e-9);
    println!(
        "upload {} {}: rows {} = inserted {} + duplicate {} + conflict {} + rejected {} in {:.2}s ({:.0} rows/s)",
        upload.id,
        upload.status.as_str(),
        counts.rows,
        counts.inserted,
        counts.duplicate,
        counts.conflict,
        counts.rejected,
        elapsed.as_secs_f64(),
        rate
    );
    if let Some(earlier) = &report.identical_to {
        println!("  {}", ward::identical_note(earlier).trim_start());
    }
    if let Some(failure) = &report.failure {
        println!("failure: {failure}");
    }
    for problem in report.first_problems.iter().take(5) {
        println!(
            "  line {}: {} {} ({})",
            problem.line, problem.column, problem.reason, problem.outcome
        );
    }
}
