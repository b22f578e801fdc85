//! Why a job's attempt did not finish: the error the worker and the plug-in it drives (the
//! analytics port) share. The worker retries an attempt that ends in one, then
//! dead-letters the job.

use ward_store::StoreError;

/// Why processing an upload did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The record store failed.
    #[error("record store: {0}")]
    Store(#[from] StoreError),
    /// Object storage failed.
    #[error("object storage: {0}")]
    Objects(#[from] object_store::Error),
    /// The upload changed under us (another worker); retry.
    #[error("the upload was changed concurrently")]
    Concurrent,
    /// The attempt panicked (a defect in Ward). The panic message is not repeated here:
    /// it may quote data the job was reading.
    #[error("processing panicked (a defect in Ward; the server's standard error has the message)")]
    Panicked,
    /// A fault injected by a test.
    #[error("injected fault after {0} rows")]
    Injected(u64),
    /// The file stream broke.
    #[error("reading the file: {0}")]
    Read(String),
    /// A task failed.
    #[error("internal: {0}")]
    Internal(String),
}
