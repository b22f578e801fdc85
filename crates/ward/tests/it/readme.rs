//! The README's commands, run as a newcomer would: its quick start's first command exactly
//! as written (with `--exit`, in a fresh data folder), and every other `cargo run` line at
//! least resolving: cargo resolves its package and features (`cargo tree` with the same
//! arguments), and Ward's command line takes its subcommand and arguments (`--help`).
//!
//! The first one runs `cargo` itself, so the default feature set (the quick start's build)
//! is compiled and run here too, whatever the test suite was built with. That rebuilds
//! `target/debug/ward` under tests that run that binary: `scripts/test` runs these two in
//! a pass of their own, after the default-features pass (so nothing recompiles).

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
    // ...in a fresh data folder under the temporary folder it was given, its key folder
    // beside it.
    let made: Vec<String> = std::fs::read_dir(temp.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("ward-demo-"))
        .collect();
    let data: Vec<&String> = made
        .iter()
        .filter(|name| !name.ends_with("-keys"))
        .collect();
    assert_eq!(data.len(), 1, "one fresh data folder: {made:?}");
    assert!(made.contains(&format!("{}-keys", data[0])), "{made:?}");
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
        let (cargo, ward) = command
            .split_once(" -- ")
            .unwrap_or_else(|| panic!("`{command}` passes Ward its arguments after ` -- `"));
        // cargo resolves the package and its features: the same arguments to `cargo tree`
        // (which builds nothing) fail on an unknown package or feature. The profile is no
        // part of that, and `cargo tree` does not take one.
        let tree = cargo.replace(" --release", "").replacen(
            "cargo run",
            "cargo tree --depth 0 --locked",
            1,
        );
        let output = run(&tree, temp.path());
        assert!(
            output.status.success(),
            "`{tree}` failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Ward takes the subcommand and its arguments: `--help` after them. The binary is
        // the one this test was built with; every feature set has every subcommand.
        let help = format!("\"$WARD_BIN\" {ward} --help");
        let output = Command::new("bash")
            .arg("-c")
            .arg(&help)
            .current_dir(workspace_root())
            .env("WARD_BIN", env!("CARGO_BIN_EXE_ward"))
            .env("WARD_KEY", "ward.PROV001.000000000000.0")
            .env("OPERATOR_KEY", "ward-operator.0")
            .output()
            .expect("bash runs");
        assert!(
            output.status.success(),
            "`ward {ward} --help` failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage:"),
            "`ward {ward} --help` printed no usage"
        );
    }
}
