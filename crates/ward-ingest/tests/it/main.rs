//! ward-ingest's integration tests, on the embedded store.

mod queue;
mod without_analytics;
