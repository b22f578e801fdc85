//! ward-ingest's integration tests, on the embedded store.

mod expected_writes;
mod queue;
mod sessions;
mod without_analytics;
