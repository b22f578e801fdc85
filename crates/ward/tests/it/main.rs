//! Ward's integration tests: one binary (link time), modules by subject.

mod api;
#[cfg(feature = "aws")]
mod aws;
mod crash;
mod helpers;
mod isolation;
mod settings;
mod signed_upload;
