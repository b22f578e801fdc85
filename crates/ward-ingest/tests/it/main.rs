//! ward-ingest's integration tests, on the embedded store.

mod queue;
mod sessions;
mod without_analytics;
