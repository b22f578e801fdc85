//! The README's commands, run as a newcomer would: its quick start's first command exactly
//! as written (with `--exit`, in a fresh data folder), and every other `cargo run` line at
//! least resolving (the package, its features and binary, the subcommand: `--help`).
//!
//! These run `cargo` itself, so the default feature set (the quick start's build) is
//! compiled and run here too, not only the `--all-features` build of the test suite. That
//! rebuilds `target/debug/ward` with the default features, under tests that run that
//! binary: `scripts/test` runs these two in a pass of their own.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the workspace root")
        .to_owned()
}

fn readme() -> String {
    std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md")
}

/// The lines of the first fenced block after `## {heading}`.
fn first_block_after(readme: &str, heading: &str) -> Vec<String> {
    let start = readme
        .find(&format!("## {heading}"))
        .unwrap_or_else(|| panic!("README.md has no {heading} section"));
    let rest = &readme[start..];
    let open = rest.find("```").expect("a fenced block");
    let body = &rest[open..];
    let body = &body[body.find('\n').expect("fence line") + 1..];
    let close = body.find("```").expect("a closed fenced block");
    body[..close].lines().map(str::to_owned).collect()
}

/// A command line without its trailing `# comment`.
fn without_comment(line: &str) -> String {
    match line.find(" #") {
        Some(at) => line[..at].trim().to_owned(),
        None => line.trim().to_owned(),
    }
}

/// Runs `command` in bash from the workspace root, with a fresh temporary folder (the demo
/// makes its data folder there) and the shell variables the README uses set.
fn run(command: &str, temp: &Path) -> std::process::Output {
    Command::new("bash")
        .arg("-c")
        .arg(command)
        .current_dir(workspace_root())
        .env("TMPDIR", temp)
        .env("WARD_KEY", "ward.PROV001.000000000000.0")
        .env("OPERATOR_KEY", "ward-operator.0")
        .env_remove("WARD_OPERATOR_KEY")
        .env_remove("WARD_DATA_DIR")
        .env_remove("WARD_CONFIG")
        .output()
        .expect("bash runs")
}

#[test]
fn the_quick_start_first_command_runs_as_written() {
    let lines = first_block_after(&readme(), "Quick start");
    let first = without_comment(lines.first().expect("a first command"));
    assert!(
        first.starts_with("cargo run "),
        "the first command is a cargo run: {first}"
    );
    let temp = tempfile::tempdir().unwrap();
    let output = run(&format!("{first} --exit"), temp.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "`{first} --exit` failed:\n{stderr}\n{stdout}"
    );
    // It did the whole demo: the report, a patient's records, the timeline, the key.
    for expected in [
        "rows 3000 = inserted",
        "CSV visit",
        "appointment",
        "WARD_KEY=",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    // ...in a fresh data folder under the temporary folder it was given.
    let made: Vec<_> = std::fs::read_dir(temp.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("ward-demo-")
        })
        .collect();
    assert_eq!(made.len(), 1, "one fresh data folder");
}

#[test]
fn every_cargo_run_line_of_the_readme_resolves() {
    let readme = readme();
    let mut commands: Vec<String> = readme
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("cargo run "))
        .map(without_comment)
        .collect();
    commands.sort();
    commands.dedup();
    assert!(
        commands.len() > 10,
        "the README's cargo run lines: {commands:?}"
    );
    let temp = tempfile::tempdir().unwrap();
    for command in &commands {
        // `--help` after the subcommand and its arguments: cargo resolves the package,
        // features and binary and builds it; the ward command resolves the subcommand.
        // The release profile is left out (the test suite builds in debug): that changes
        // which profile is built, not what resolves.
        let debug = command.replace(" --release", "");
        let output = run(&format!("{debug} --help"), temp.path());
        assert!(
            output.status.success(),
            "`{debug} --help` failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage:"),
            "`{debug} --help` printed no usage"
        );
    }
}
