//! The dependency invariants of ARCHITECTURE.md that the manifests can show, read from
//! `cargo metadata`: which crates may depend on which.

use std::collections::{BTreeMap, BTreeSet};

/// `cargo metadata` of the workspace (no dependencies' own packages).
fn metadata() -> serde_json::Value {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Each workspace crate and the names of its normal (not dev) dependencies.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    metadata()["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|package| {
            let names = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|dependency| dependency["kind"].is_null())
                .map(|dependency| dependency["name"].as_str().unwrap().to_owned())
                .collect();
            (package["name"].as_str().unwrap().to_owned(), names)
        })
        .collect()
}

#[test]
fn crates_depend_only_on_what_the_architecture_allows() {
    let crates = dependencies();
    assert!(crates.contains_key("ward-domain") && crates.contains_key("ward"));
    let users_of = |dependency: &str| -> BTreeSet<&str> {
        crates
            .iter()
            .filter(|(_, names)| names.contains(dependency))
            .map(|(name, _)| name.as_str())
            .collect()
    };
    // Concrete adapters and heavy leaves: only the composition root names them.
    for adapter in ["ward-store-embedded", "ward-analytics", "ward-aws"] {
        assert_eq!(users_of(adapter), BTreeSet::from(["ward"]), "{adapter}");
    }
    assert!(
        users_of("ward-store-dynamodb").is_subset(&BTreeSet::from(["ward"])),
        "only the composition root picks the DynamoDB adapter"
    );
    // The pipeline is driven by the API and the composition root; nothing depends on it
    // for a type (the ports and the records crates share are `ward-ports`).
    assert!(
        users_of("ward-ingest").is_subset(&BTreeSet::from(["ward", "ward-api"])),
        "ward-ingest: {:?}",
        users_of("ward-ingest")
    );
    let ward_crates = |name: &str| -> BTreeSet<String> {
        crates[name]
            .iter()
            .filter(|dependency| dependency.starts_with("ward"))
            .cloned()
            .collect()
    };
    assert_eq!(
        ward_crates("ward-ports"),
        BTreeSet::from(["ward-domain".to_owned(), "ward-store".to_owned()])
    );
    // Who a person is: on the domain and the store port only, used by the API and the
    // composition root; passwords and JWTs nowhere else.
    assert_eq!(
        ward_crates("ward-identity"),
        BTreeSet::from(["ward-domain".to_owned(), "ward-store".to_owned()])
    );
    assert!(
        users_of("ward-identity").is_subset(&BTreeSet::from(["ward", "ward-api"])),
        "ward-identity: {:?}",
        users_of("ward-identity")
    );
    for secret_keeper in ["argon2", "jsonwebtoken"] {
        assert_eq!(
            users_of(secret_keeper),
            BTreeSet::from(["ward-identity"]),
            "{secret_keeper}"
        );
    }
    // Patient data at rest: on the store port only, used by the composition root (the
    // domain never knows its data is sealed), by the ingest for its sort runs (an
    // in-memory key) and by the AWS adapters for their key source (AWS KMS); the ciphers
    // only there.
    assert_eq!(
        ward_crates("ward-protect"),
        BTreeSet::from(["ward-store".to_owned()])
    );
    assert_eq!(
        users_of("ward-protect"),
        BTreeSet::from(["ward", "ward-aws", "ward-ingest"])
    );
    for cipher in ["ring", "lz4_flex"] {
        assert_eq!(
            users_of(cipher),
            BTreeSet::from(["ward-protect"]),
            "{cipher}"
        );
    }
    assert!(ward_crates("ward-store").is_empty());
    assert!(ward_crates("ward-domain").is_empty());
    // The SQL engine lives in its leaf.
    assert_eq!(users_of("datafusion"), BTreeSet::from(["ward-analytics"]));
    // redb only in the embedded adapter; the AWS SDK only in the AWS crates.
    assert_eq!(users_of("redb"), BTreeSet::from(["ward-store-embedded"]));
    for sdk in ["aws-sdk-dynamodb", "aws-sdk-sqs", "aws-config"] {
        assert!(
            users_of(sdk).is_subset(&BTreeSet::from(["ward-aws", "ward-store-dynamodb"])),
            "{sdk}: {:?}",
            users_of(sdk)
        );
    }
    // The domain does no IO and has no async.
    let domain = &crates["ward-domain"];
    for io in [
        "tokio",
        "futures",
        "async-trait",
        "object_store",
        "reqwest",
        "redb",
    ] {
        assert!(!domain.contains(io), "ward-domain depends on {io}");
    }
    // The API never names a store adapter.
    let api = &crates["ward-api"];
    for adapter in [
        "redb",
        "ward-store-embedded",
        "ward-store-dynamodb",
        "ward-aws",
    ] {
        assert!(!api.contains(adapter), "ward-api depends on {adapter}");
    }
}

#[test]
fn every_dependency_is_named_in_its_crates_source() {
    let mut unused = Vec::new();
    for package in metadata()["packages"].as_array().unwrap() {
        let manifest = std::path::PathBuf::from(package["manifest_path"].as_str().unwrap());
        let root = manifest.parent().unwrap();
        let mut source = String::new();
        for folder in ["src", "examples", "benches"] {
            if root.join(folder).is_dir() {
                for file in rust_files(&root.join(folder)) {
                    source.push_str(&std::fs::read_to_string(file).unwrap());
                }
            }
        }
        for dependency in package["dependencies"].as_array().unwrap() {
            if !dependency["kind"].is_null() {
                continue;
            }
            let name = dependency["rename"]
                .as_str()
                .unwrap_or_else(|| dependency["name"].as_str().unwrap())
                .replace('-', "_");
            let named = source.match_indices(name.as_str()).any(|(at, _)| {
                let before = source[..at].chars().next_back();
                let after = source[at + name.len()..].chars().next();
                let boundary =
                    |c: Option<char>| !c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                boundary(before) && boundary(after)
            });
            if !named {
                unused.push(format!("{} -> {name}", package["name"].as_str().unwrap()));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "dependencies no source names: {unused:?}"
    );
}

/// Each workspace crate's `src` folder.
fn source_folders() -> Vec<std::path::PathBuf> {
    let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut folders: Vec<_> = std::fs::read_dir(&crates)
        .unwrap()
        .map(|entry| entry.unwrap().path().join("src"))
        .filter(|src| src.is_dir())
        .collect();
    folders.sort();
    assert!(folders.len() >= 10, "{folders:?}");
    folders
}

/// The `.rs` files under a folder.
fn rust_files(folder: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// The lines of a source file before its unit tests (`#[cfg(test)]` at the start of a
/// line), which do not count toward its size.
fn lines_before_tests(text: &str) -> usize {
    text.lines()
        .take_while(|line| !line.starts_with("#[cfg(test)]"))
        .count()
}

#[test]
fn no_source_file_is_over_800_lines_before_its_tests() {
    let mut long = Vec::new();
    for folder in source_folders() {
        for file in rust_files(&folder) {
            let text = std::fs::read_to_string(&file).unwrap();
            let lines = lines_before_tests(&text);
            if lines > 800 {
                long.push(format!("{}: {lines}", file.display()));
            }
        }
    }
    assert!(long.is_empty(), "files over 800 lines: {long:#?}");
}

/// The crate's top-level modules each module file names through `crate::`.
fn module_imports(src: &std::path::Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).unwrap();
        let module = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if matches!(module.as_str(), "lib" | "main" | "bin") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let text = &text[..text.find("\n#[cfg(test)]").unwrap_or(text.len())];
        // Comments (doc links among them) import nothing.
        let code: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let code = code.as_str();
        let named = imports.entry(module.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let target = &rest[..end];
            // A module is named in lower case; a capital starts a re-exported type.
            if !target.is_empty()
                && target != module
                && target.starts_with(|c: char| c.is_ascii_lowercase())
            {
                named.insert(target.to_owned());
            }
        }
        // `use crate::{a, b::C}` groups.
        for (at, _) in code.match_indices("crate::{") {
            let group = &code[at + "crate::{".len()..];
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for name in group.split(',') {
                let name = name.trim().split("::").next().unwrap_or_default();
                if !name.is_empty()
                    && name != module
                    && name.starts_with(|c: char| c.is_ascii_lowercase())
                {
                    named.insert(name.to_owned());
                }
            }
        }
    }
    imports
}

#[test]
fn no_two_modules_import_each_other() {
    let mut cycles = Vec::new();
    for folder in source_folders() {
        let imports = module_imports(&folder);
        // Depth-first search for a path back to the start, from every module.
        for start in imports.keys() {
            let mut stack = vec![(start.clone(), vec![start.clone()])];
            let mut seen = BTreeSet::new();
            while let Some((module, path)) = stack.pop() {
                for next in imports.get(&module).into_iter().flatten() {
                    if next == start {
                        cycles.push(format!(
                            "{}: {} -> {start}",
                            folder.display(),
                            path.join(" -> ")
                        ));
                    } else if seen.insert(next.clone()) {
                        let mut longer = path.clone();
                        longer.push(next.clone());
                        stack.push((next.clone(), longer));
                    }
                }
            }
        }
    }
    assert!(cycles.is_empty(), "module cycles: {cycles:#?}");
}
