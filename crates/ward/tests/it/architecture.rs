//! The dependency invariants of ARCHITECTURE.md that the manifests can show, read from
//! `cargo metadata`: which crates may depend on which.

use std::collections::{BTreeMap, BTreeSet};

/// Each workspace crate and the names of its normal (not dev) dependencies.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
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
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    metadata["packages"]
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
