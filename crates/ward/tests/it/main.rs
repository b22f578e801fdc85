//! Ward's integration tests: one binary (link time), modules by subject.

mod access;
#[cfg(feature = "analytics")]
mod analytics;
mod api;
mod architecture;
#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "aws")]
mod aws_crash;
#[cfg(feature = "aws")]
mod aws_migrate;
mod cli;
mod crash;
mod emr;
mod erasure;
mod helpers;
mod isolation;
mod key_order;
mod migrate;
mod oidc;
mod protection;
mod readme;
mod settings;
mod signed_upload;
mod store_calls;
