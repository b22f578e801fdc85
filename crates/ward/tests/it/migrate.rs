//! `ward migrate` on a real data folder of the last Ward before encryption at rest
//! (tests/fixtures): afterwards no MRN, name, note or email is in any file of the folder,
//! and everything it held reads through the API as before (visit records, the EMR, email
//! uniqueness, clinic and clinician lists, documents' bytes, the upload's error list);
//! killed (SIGKILL) in the middle of its copy or of its swap, it finishes when run again,
//! with the same result as a run that was never interrupted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use ward_store::{Item, Key, PK, SK};

use crate::helpers::{Options, app_for, kill_at_first_line, start_server};

pub(crate) const FIXTURE: &str = "tests/fixtures/pre-encryption-4866ee4.tar.gz";

/// The fixture unpacked into a new temporary folder; its data folder.
pub(crate) fn unpack() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("tar")
        .arg("xzf")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE))
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let data = dir.path().join("data");
    (dir, data)
}

fn ward(args: &[&str], data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ward"));
    command
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("WARD_KEYS_DIR")
        .env_remove("WARD_DATA_DIR")
        .env_remove(ward::migrate::CRASH_AT_VARIABLE);
    command
}

fn run(mut command: Command) -> Output {
    command.output().unwrap()
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every item of the old store, as stored.
pub(crate) fn old_items(data: &Path) -> Vec<Item> {
    let table = ward::embedded::open_table(&data.join("ward.redb"), &Default::default()).unwrap();
    let mut items = Vec::new();
    let mut after: Option<Key> = None;
    loop {
        let (page, next) = table.scan(after.as_ref(), 200).unwrap();
        items.extend(page);
        match next {
            Some(next) => after = Some(next),
            None => return items,
        }
    }
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(ward_store::Value::as_s)
}

/// What the old store held of its patients: MRNs, names, notes and emails.
pub(crate) fn secrets_of(items: &[Item]) -> BTreeSet<String> {
    let mut secrets = BTreeSet::new();
    for item in items {
        let pk = text(item, PK).unwrap_or_default();
        if let Some(rest) = pk.strip_prefix("PROV#PROV001#PAT#") {
            secrets.insert(rest.split('#').next().unwrap().to_owned());
        }
        for name in ["firstName", "lastName", "doctorsNotes"] {
            if let Some(value) = text(item, name).filter(|value| value.len() >= 6) {
                secrets.insert(value.to_owned());
            }
        }
        if let Some(data) = text(item, "data") {
            let data: Value = serde_json::from_str(data).unwrap();
            for name in ["email", "firstName", "lastName", "phone"] {
                if let Some(value) = data[name].as_str().filter(|value| value.len() >= 6) {
                    secrets.insert(value.to_owned());
                }
            }
        }
    }
    secrets
}

/// Every file below `dir`.
pub(crate) fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

pub(crate) fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Every item of an encrypted data folder, opened (by its key folder), by key; the
/// protection layer's own records aside.
async fn opened_items(data: &Path, keys: &Path) -> BTreeMap<(String, String), String> {
    let raw = ward::embedded::open_table(&data.join("ward.redb"), &Default::default()).unwrap();
    let protected = ward::protection::protect(data, std::sync::Arc::new(raw.clone()), keys)
        .await
        .unwrap();
    let mut opened = BTreeMap::new();
    let mut after: Option<Key> = None;
    loop {
        let (page, next) = raw.scan(after.as_ref(), 200).unwrap();
        for item in page {
            let key = Key::of(&item).unwrap();
            if key.sk == ward_protect::DATA_KEY_SK {
                continue;
            }
            let item = protected.table.get(&key).await.unwrap().unwrap();
            opened.insert((key.pk, key.sk), format!("{item:?}"));
        }
        match next {
            Some(next) => after = Some(next),
            None => return opened,
        }
    }
}

#[tokio::test]
async fn a_folder_written_before_encryption_is_encrypted_in_place_and_reads_as_before() {
    let (dir, data) = unpack();
    let old = old_items(&data);
    let secrets = secrets_of(&old);
    std::fs::write(data.join("notes.txt"), "not Ward's").unwrap();
    assert!(secrets.len() > 100, "{} secrets", secrets.len());
    let old_documents: Vec<Vec<u8>> = files(&data.join("objects/PROV001/documents/MRN0000001"))
        .iter()
        .map(|file| std::fs::read(file).unwrap())
        .collect();

    let said = stdout_of(&run(ward(&["migrate"], &data)));
    assert!(
        said.contains(&format!("{} items and 15 objects, sealed", old.len())),
        "{said}"
    );
    assert!(
        said.contains(
            "left as they were, not being Ward's (delete any that holds patient data): notes.txt"
        ),
        "{said}"
    );
    std::fs::remove_file(data.join("notes.txt")).unwrap();
    // Nothing of the patients is left in plaintext, in any file of the folder.
    let mut leaks = Vec::new();
    for file in files(&data) {
        let bytes = std::fs::read(&file).unwrap();
        for secret in &secrets {
            if holds(&bytes, secret) || holds(file.to_str().unwrap().as_bytes(), secret) {
                leaks.push(format!("{}: {secret}", file.display()));
            }
        }
    }
    assert!(leaks.is_empty(), "plaintext left: {leaks:?}");
    assert!(!data.join(ward::migrate::STAGING_DIR).exists());
    // Run again, it has nothing to do.
    let again = stdout_of(&run(ward(&["migrate"], &data)));
    assert!(again.contains("is encrypted at rest already"), "{again}");

    // Served, everything reads as it did.
    let running = start_server(&data, Options::default()).await;
    let provider = ward_domain::ProviderId::parse("PROV001").unwrap();
    let key = ward_ports::Tenants::new(running.state.table.clone())
        .issue_full_key(&provider, false)
        .await
        .unwrap()
        .0;
    let app = app_for(running, key.clone());
    let visits_of = |mrn: &str| {
        old.iter()
            .filter(|item| {
                text(item, PK) == Some(&format!("PROV#PROV001#PAT#{mrn}"))
                    && text(item, SK).unwrap().starts_with("VISIT#")
            })
            .count()
    };
    for mrn in ["MRN0000040", "MRN0000031", "MRN0000001"] {
        let (status, records) = app.get_patient_records(mrn, "").await;
        assert_eq!(status, 200, "{records}");
        assert_eq!(
            records["records"].as_array().unwrap().len(),
            visits_of(mrn),
            "{mrn}: {records}"
        );
    }
    let (status, patient) = app.get("/v1/patients/MRN0000005", &key).await;
    assert_eq!(status, 200, "{patient}");
    // The email claims came along: another patient with the same address is refused.
    let email = patient["email"].as_str().unwrap().to_uppercase();
    let (status, problem) = app
        .post_json(
            "/v1/patients",
            &key,
            json!({
                "mrn": "MRN9999999", "firstName": "Copy", "lastName": "Cat",
                "dateOfBirth": "1990-01-01", "sex": "FEMALE", "clinic": "NORTH", "email": email
            }),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    let (status, found) = app.get(&format!("/v1/patients?email={email}"), &key).await;
    assert_eq!(
        (status, &found["items"][0]["mrn"]),
        (200, &json!("MRN0000005")),
        "{found}"
    );
    // A clinic's patients and a clinician's patients list from the rewritten indexes.
    let profiles = old
        .iter()
        .filter(|item| {
            text(item, PK).unwrap().starts_with("PROV#PROV001#PAT#")
                && text(item, SK) == Some("PROFILE")
        })
        .count();
    let mut listed = 0;
    for clinic in ["NORTH", "SOUTH", "CENTRAL"] {
        let (status, page) = app
            .get(&format!("/v1/clinics/{clinic}/patients?limit=100"), &key)
            .await;
        assert_eq!(status, 200, "{page}");
        listed += page["items"].as_array().unwrap().len();
    }
    assert_eq!(listed, profiles);
    let (status, page) = app.get("/v1/clinicians/DR001/patients", &key).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 5, "{page}");
    // A document's bytes, from its new (sealed) object.
    let (status, documents) = app.get("/v1/patients/MRN0000001/documents", &key).await;
    assert_eq!(status, 200, "{documents}");
    let id = documents["items"][0]["id"].as_str().unwrap();
    let content = app
        .http
        .get(format!(
            "{}/v1/patients/MRN0000001/documents/{id}/content",
            app.base_url
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(content.status().as_u16(), 200);
    let bytes = content.bytes().await.unwrap();
    assert!(
        old_documents.iter().any(|old| old[..] == bytes[..]),
        "other bytes"
    );
    let (status, uploads) = app.get("/v1/uploads", &key).await;
    assert_eq!(status, 200, "{uploads}");
    let upload = uploads["uploads"][0]["uploadId"]
        .as_str()
        .unwrap_or_else(|| panic!("{uploads}"))
        .to_owned();
    let (status, errors) = app
        .get(&format!("/v1/uploads/{upload}/errors.csv"), &key)
        .await;
    assert_eq!(status, 200, "{errors}");
    assert!(
        errors.as_str().unwrap().contains("MRN#BAD"),
        "the old error list, opened: {errors}"
    );
    app.stop().await;
    drop(dir);
}

#[tokio::test]
async fn killed_mid_copy_or_mid_swap_it_finishes_when_run_again_as_if_never_stopped() {
    // An uninterrupted migration, the reference.
    let (reference_dir, reference) = unpack();
    stdout_of(&run(ward(&["migrate"], &reference)));
    let reference_keys = reference_dir.path().join("data-keys");

    // Another copy, with the same key folder (so the same pseudonyms), killed mid-copy.
    let (dir, data) = unpack();
    let keys = dir.path().join("data-keys");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(&reference_keys)
        .arg(&keys)
        .status()
        .unwrap();
    assert!(copied.success());
    kill_at_first_line(
        ward(&["migrate", "--page-items", "2"], &data),
        "items encrypted:",
    );
    assert!(data.join(ward::migrate::STAGING_DIR).exists());
    // Meanwhile the folder is refused, naming what to run.
    let refused = run(ward(&["serve", "--listen", "127.0.0.1:0"], &data));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("ward migrate --data-dir"), "{stderr}");
    // Run again, it goes on, then crashes between moving the old store aside and putting
    // the new one in place.
    let mut crashing = ward(&["migrate", "--page-items", "2"], &data);
    crashing.env(ward::migrate::CRASH_AT_VARIABLE, "swap");
    let crashed = run(crashing);
    assert!(!crashed.status.success(), "it did not stop at the swap");
    assert!(!data.join("ward.redb").exists());
    let refused = run(ward(&["serve", "--listen", "127.0.0.1:0"], &data));
    assert!(!refused.status.success());
    assert!(!data.join("ward.redb").exists(), "serve made a new store");
    // Run once more, it finishes the swap.
    let finished = stdout_of(&run(ward(&["migrate"], &data)));
    assert!(
        finished.contains("finished putting the encrypted store in place"),
        "{finished}"
    );
    assert!(!data.join(ward::migrate::STAGING_DIR).exists());
    // The same items, opened, as the uninterrupted run's; the same objects.
    let expected = opened_items(&reference, &reference_keys).await;
    let got = opened_items(&data, &keys).await;
    assert_eq!(got.len(), expected.len());
    for (key, item) in &expected {
        assert_eq!(got.get(key), Some(item), "{key:?}");
    }
    let names = |root: &Path| -> BTreeSet<PathBuf> {
        files(&root.join("objects"))
            .into_iter()
            .map(|file| file.strip_prefix(root).unwrap().to_path_buf())
            .collect()
    };
    assert_eq!(names(&data), names(&reference));
}
