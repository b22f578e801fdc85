//! `ward serve`: the API and the in-process worker, in either shape.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;
use ward_api::{ApiSettings, AppState, Metrics, ServerUploadUrls, UploadSigner};
use ward_ingest::retention::{self, RetentionPolicy};
use ward_ingest::{IngestSettings, Worker};
use ward_ports::UploadUrls;

use crate::config::Secret;
use crate::embedded;
use crate::shape::{self, Shape};

/// What a server needs to start.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The data folder.
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Base URL for upload links; default `http://{bound address}`.
    pub public_url: Option<String>,
    /// API tuning.
    pub api: ApiSettings,
    /// Pipeline tuning.
    pub ingest: IngestSettings,
    /// `WARD_OPERATOR_KEY`, if set.
    pub operator_key: Secret,
    /// Object retention, swept hourly.
    pub retention: RetentionPolicy,
    /// Embedded store tuning.
    pub store: crate::embedded::EmbeddedStore,
    /// Embedded (the data folder) or AWS.
    pub shape: Shape,
    /// A decorator of the table port (`None`: the adapter itself).
    pub table_layer: Option<shape::TableLayer>,
}

/// A running server.
pub struct RunningServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// The base URL.
    pub base_url: String,
    /// The operator key, when this start created it.
    pub new_operator_key: Option<String>,
    /// Shared state (for in-process helpers such as the demo and tests).
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    worker: tokio::task::JoinHandle<()>,
    sweeper: tokio::task::JoinHandle<()>,
    rewrap: Option<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting requests, lets the worker finish its job, and waits.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        // Running ad hoc queries end now (their requests answer 503), so shutdown does
        // not wait for their time limit.
        if let Some(analytics) = &self.state.ctx.analytics {
            analytics.cancel_queries();
        }
        self.server.await.context("server task")??;
        self.worker.await.context("worker task")?;
        self.sweeper.abort();
        // An unfinished re-wrap goes on at the next start (each key re-wrapped is kept).
        if let Some(rewrap) = self.rewrap {
            rewrap.abort();
            let _ = rewrap.await;
        }
        // Buffered read-audit events reach the store, and the writer lets go of it.
        self.state.emr.audit_log().close().await;
        Ok(())
    }

    /// Waits until the background re-wrap after a key rotation has ended (at once when
    /// there was none).
    pub async fn rewrap_finished(&mut self) {
        if let Some(rewrap) = self.rewrap.take() {
            let _ = rewrap.await;
        }
    }

    /// Waits until Ctrl-C / SIGTERM, then stops.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.stop().await
    }
}

/// Opens the data folder, resumes unfinished jobs, and starts the API and the worker.
pub async fn start(mut options: ServerOptions) -> anyhow::Result<RunningServer> {
    let (backend, wake) = open_backend(&mut options).await?;
    let (operator_key_hash, new_operator_key) =
        embedded::operator_key(backend.table.as_ref(), options.operator_key.expose()).await?;
    let signer = UploadSigner::new(embedded::signing_secret(backend.table.as_ref()).await?);
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let addr = listener.local_addr()?;
    let base_url = options
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let mut api = options.api.clone();
    api.public_url = base_url.clone();
    let (signer, upload_urls) = match &backend.upload_urls {
        Some(urls) => (None, Arc::clone(urls)),
        None => {
            let urls: Arc<dyn UploadUrls> =
                Arc::new(ServerUploadUrls::new(signer.clone(), &base_url));
            (Some(signer), urls)
        }
    };
    let state = AppState {
        ctx: Arc::clone(&backend.ctx),
        table: Arc::clone(&backend.table),
        tenants: ward_ports::Tenants::new(Arc::clone(&backend.table)),
        visits: ward_ports::VisitRepository::new(
            Arc::clone(&backend.table),
            Arc::clone(&backend.ctx.pseudonyms),
        ),
        upload_urls,
        signer,
        operator_key_hash,
        settings: Arc::new(api.clone()),
        metrics: Arc::new(Metrics::default()),
        emr: ward_emr::Emr::new(
            Arc::clone(&backend.table),
            Arc::clone(&backend.ctx.pseudonyms),
            if options.ingest.audit {
                ward_emr::AuditLog::start(
                    Arc::clone(&backend.table),
                    Arc::clone(&backend.ctx.pseudonyms),
                )
            } else {
                ward_emr::AuditLog::disabled()
            },
        ),
        cursors: Arc::new(ward_api::cursors::CursorSeal::new(
            &embedded::cursor_secret(backend.table.as_ref()).await?,
        )),
        identity: ward_identity::Identity::new(
            Arc::clone(&backend.table),
            api.token_ttl_seconds,
            api.oidc.clone(),
        ),
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let worker = Worker::new(Arc::clone(&backend.ctx));
    let worker_shutdown = shutdown_rx.clone();
    let worker = tokio::spawn(async move { worker.run(wake, worker_shutdown).await });
    let sweeper = {
        let objects = backend.ctx.objects.clone();
        let uploads = ward_ports::uploads::UploadRepository::new(Arc::clone(&backend.table));
        let policy = options.retention;
        let sweeps = backend.sweeps_objects;
        tokio::spawn(async move {
            if !sweeps {
                // S3: the bucket's lifecycle rules expire objects.
                return;
            }
            // The first sweep comes an hour after start-up, never before recovery.
            let mut hourly = retention::schedule(std::time::Duration::from_secs(3600));
            loop {
                hourly.tick().await;
                let now = std::time::SystemTime::now();
                if let Err(error) = retention::sweep(objects.as_ref(), &uploads, policy, now).await
                {
                    tracing::warn!(error = %error, "retention sweep failed");
                }
            }
        })
    };
    // After a rotation, the data keys still wrapped under an older version are moved to
    // the current one while the server serves (each key once; new keys are current).
    let rewrap = backend.keys.clone().map(|keys| {
        tokio::spawn(crate::keys_cli::rewrap_in_background(
            Arc::clone(&backend.table),
            keys,
        ))
    });
    let router = ward_api::router(state.clone());
    let mut server_shutdown = shutdown_rx;
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = server_shutdown.wait_for(|stop| *stop).await;
        })
        .await
    });
    tracing::info!(%addr, "ward is serving");
    Ok(RunningServer {
        addr,
        base_url,
        new_operator_key,
        state,
        shutdown,
        server,
        worker,
        sweeper,
        rewrap,
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Opens the shape's adapters and resumes unfinished jobs; returns them and what wakes an
/// idle worker.
async fn open_backend(
    options: &mut ServerOptions,
) -> anyhow::Result<(shape::Backend, Arc<tokio::sync::Notify>)> {
    options.ingest.max_file_bytes = options.api.max_upload_bytes;
    let backend = shape::open(
        &options.shape,
        &options.data_dir,
        options.ingest.clone(),
        &options.store,
    )
    .await?;
    let backend = match &options.table_layer {
        Some(layer) => backend.layered(layer),
        None => backend,
    };
    let wake = match &backend.table_queue {
        Some(queue) => {
            // The embedded store has one owner: no lease can belong to a live worker.
            let resumed = queue.release_all_leases().await?;
            let requeued = ward_ingest::resume_received_uploads(&backend.ctx, 1000).await?;
            if resumed + requeued > 0 {
                tracing::info!(resumed, requeued, "unfinished jobs resume");
            }
            queue.notifier()
        }
        None => Arc::new(tokio::sync::Notify::new()),
    };
    Ok((backend, wake))
}

/// `ward worker`: the worker alone, until Ctrl-C / SIGTERM (it finishes the job in hand).
pub async fn run_worker(mut options: ServerOptions) -> anyhow::Result<()> {
    let (backend, wake) = open_backend(&mut options).await?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let worker = Worker::new(Arc::clone(&backend.ctx));
    let task = tokio::spawn(async move { worker.run(wake, shutdown_rx).await });
    tracing::info!("ward worker is running");
    shutdown_signal().await;
    tracing::info!("stopping after the job in hand");
    let _ = shutdown.send(true);
    task.await.context("worker task")?;
    Ok(())
}
