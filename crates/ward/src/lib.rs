//! The `ward` command's library: the composition root (the only place that names concrete
//! adapters), the server, the HTTP client, the generator and the benchmarks. `main.rs`
//! parses arguments and calls in here; integration tests call in here too.

pub mod analytics_cli;
pub mod bench;
pub mod bench_access;
pub mod client;
pub mod config;
pub mod demo;
pub mod durable_objects;
pub mod embedded;
pub mod emr_cli;
pub mod keys_cli;
#[cfg(feature = "aws")]
pub mod lambda;
pub mod local_ingest;
pub mod migrate;
pub mod protection;
pub mod server;
pub mod shape;
pub mod synthetic;
pub mod users_cli;

/// Prints a report's counts in one line (and, for a file byte-identical to an earlier
/// upload, which one).
pub fn counts_line(report: &serde_json::Value) -> String {
    let counts = &report["counts"];
    let mut line = format!(
        "rows {} = inserted {} + duplicate {} + conflict {} + rejected {}",
        counts["rows"],
        counts["inserted"],
        counts["duplicate"],
        counts["conflict"],
        counts["rejected"]
    );
    if let Some(earlier) = report["identicalTo"].as_str() {
        line.push_str(&identical_note(earlier));
    }
    line
}

/// Says that a file's outcomes were carried over from the identical upload `earlier`.
pub fn identical_note(earlier: &str) -> String {
    format!(" (the same bytes as upload {earlier}: its outcomes carried over, no row read)")
}
