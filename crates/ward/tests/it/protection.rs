//! Patient data at rest in the embedded shape: after the demo's CSV and EMR data, the
//! store file holds none of the patients' names, notes or emails in plaintext; the key
//! folder is made beside the data folder, owner-only; a data folder is refused, with what
//! to do, without its key folder, with another one, with one inside it, or when it was
//! written before encryption at rest.

use std::path::Path;
use std::process::{Command, Output};

use crate::helpers::count_after;

fn ward(args: &[&str], data: &Path, keys: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ward"));
    command.args(args).arg("--data-dir").arg(data);
    command
        .env_remove("WARD_KEYS_DIR")
        .env_remove("WARD_DATA_DIR");
    if let Some(keys) = keys {
        command.env("WARD_KEYS_DIR", keys);
    }
    command.output().unwrap()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn after_the_demo_the_store_holds_no_name_note_or_email_in_plaintext() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let output = ward(
        &["demo", "--exit", "--rows", "300", "--listen", "127.0.0.1:0"],
        &data,
        None,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The key folder beside the data folder, owner-only.
    let keys = dir.path().join("data-keys");
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&keys), 0o700);
    assert_eq!(mode(&keys.join("master.keys")), 0o600);
    // What the CSV held: MRNs, names and notes.
    let mut secrets: Vec<String> = Vec::new();
    let mut reader = csv::Reader::from_path(data.join("demo-visits.csv")).unwrap();
    for row in reader.records() {
        let row = row.unwrap();
        for field in [0, 2, 3, 4] {
            let text = row.get(field).unwrap_or_default().trim();
            if text.len() >= 5 {
                secrets.push(text.to_owned());
            }
        }
    }
    // ...what the EMR demo printed of a patient's records, and its patients' emails
    // (`gen emr` writes them at mail.example).
    for printed in ["Chest discomfort on exertion", "Blood panel"] {
        assert!(
            stdout.contains(printed),
            "the demo prints {printed:?}: {stdout}"
        );
        secrets.push(printed.to_owned());
    }
    secrets.push("@mail.example".to_owned());
    secrets.sort();
    secrets.dedup();
    assert!(secrets.len() > 20, "{secrets:?}");
    let store = std::fs::read(data.join("ward.redb")).unwrap();
    let found: Vec<&String> = secrets
        .iter()
        .filter(|secret| contains(&store, secret))
        .collect();
    assert!(found.is_empty(), "in plaintext in ward.redb: {found:?}");
    // No MRN at all, of the CSV or of the EMR demo: not in keys, index keys or values.
    assert!(!contains(&store, "MRN0"), "an MRN in ward.redb");
    // Nor in any object (the uploaded CSV, its report and error list, documents) or
    // temporary file, nor in their paths.
    let mut files = Vec::new();
    let mut folders = vec![data.join("objects"), data.join("tmp")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 3, "the demo's objects: {files:?}");
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let found: Vec<&String> = secrets
            .iter()
            .filter(|secret| contains(&bytes, secret))
            .collect();
        assert!(
            found.is_empty(),
            "in plaintext in {}: {found:?}",
            file.display()
        );
        assert!(!contains(&bytes, "MRN0"), "an MRN in {}", file.display());
        assert!(
            !file.to_string_lossy().contains("MRN"),
            "an MRN in a path: {}",
            file.display()
        );
    }
    // The key store names no patient either (its keys are named by id).
    let key_store = std::fs::read(keys.join("keys.redb")).unwrap();
    assert!(!contains(&key_store, "MRN0"), "an MRN in the key store");
}

#[test]
fn a_data_folder_without_its_own_key_folder_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let made = ward(&["tenant", "create", "PROV001"], &data, None);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    // Another data folder's key folder: refused, naming it.
    let other = dir.path().join("other-keys");
    let elsewhere = ward(
        &["tenant", "create", "PROV001"],
        &dir.path().join("other"),
        Some(&other),
    );
    assert!(elsewhere.status.success());
    let refused = ward(&["tenant", "rotate", "PROV001"], &data, Some(&other));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("is not the one the data folder"),
        "{stderr}"
    );
    // No key folder at all (a data folder copied without it).
    std::fs::rename(dir.path().join("data-keys"), dir.path().join("moved-keys")).unwrap();
    let refused = ward(&["tenant", "rotate", "PROV001"], &data, None);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("which does not exist"), "{stderr}");
    // Pointed at the moved folder, it works again.
    let moved = dir.path().join("moved-keys");
    let rotated = ward(&["tenant", "rotate", "PROV001"], &data, Some(&moved));
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    // A key folder inside the data folder is refused.
    let inside = data.join("keys");
    let fresh = dir.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let refused = ward(
        &["tenant", "create", "PROV001"],
        &fresh,
        Some(&fresh.join("keys")),
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("is inside the data folder"), "{stderr}");
    assert!(!inside.exists());
}

#[tokio::test]
async fn a_data_folder_written_before_encryption_at_rest_is_refused_not_mixed() {
    // A data folder the last Ward before encryption at rest wrote (tests/fixtures).
    let (dir, data) = crate::migrate::unpack();
    let before = std::fs::read(data.join("ward.redb")).unwrap();
    assert!(
        contains(&before, "MRN0000001"),
        "the fixture is in plaintext"
    );
    for args in [
        &["tenant", "create", "PROV002"][..],
        &["keys", "status"][..],
        &["serve", "--listen", "127.0.0.1:0"][..],
    ] {
        let refused = ward(args, &data, None);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{args:?}");
        assert!(
            stderr.contains("was written by a Ward without encryption at rest"),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("run `ward migrate --data-dir {}`", data.display())),
            "{args:?} names what to run: {stderr}"
        );
    }
    assert!(
        !dir.path().join("data-keys").exists(),
        "no key folder made for it"
    );
    // Nothing of it was sealed or marked sealed: it stays a folder of that version.
    let table = ward::embedded::open_table(&data.join("ward.redb"), &Default::default()).unwrap();
    let marked =
        ward_store::Table::get(&table, &ward_store::Key::new("PLATFORM#PROTECTION", "KEYS"))
            .await
            .unwrap();
    assert!(marked.is_none(), "the refused folder was marked sealed");
    drop(table);
    let after = std::fs::read(data.join("ward.redb")).unwrap();
    assert!(
        contains(&after, "MRN0000001"),
        "its records are still there"
    );
}

fn ward_ok(args: &[&str], data: &Path) -> String {
    let output = ward(args, data, None);
    assert!(
        output.status.success(),
        "ward {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn a_rotation_adds_a_version_re_wraps_every_data_key_and_the_data_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let csv = dir.path().join("visits.csv");
    std::fs::write(
        &csv,
        "medical_record_number,date_time,first_name,last_name,doctors_notes\n\
         MRN1,2025-01-01T10:00:00Z,Ada,Lovelace,first visit\n\
         MRN2,2025-01-02T10:00:00Z,Alan,Turing,second visit\n\
         MRN3,2025-01-03T10:00:00Z,Grace,Hopper,third visit\n",
    )
    .unwrap();
    ward_ok(
        &["ingest", csv.to_str().unwrap(), "--provider", "PROV001"],
        &data,
    );
    let status = ward_ok(&["keys", "status"], &data);
    // Three patients' keys and the provider's own (its upload report), all under v1, given
    // out of the provider's first pool of keys made ahead.
    let made = count_after(&status, "PROV001          data keys v1: ");
    assert!(made >= 4, "{status}");
    assert!(
        status.contains("every data key is wrapped under version 1"),
        "{status}"
    );
    let rotated = ward_ok(&["keys", "rotate"], &data);
    assert!(rotated.contains("key version 2 added"), "{rotated}");
    assert!(
        rotated.contains(&format!("PROV001          {made} data keys re-wrapped")),
        "{rotated}"
    );
    let status = ward_ok(&["keys", "status"], &data);
    assert!(
        status.contains(&format!("PROV001          data keys v2: {made}\n")),
        "{status}"
    );
    // Nothing left to re-wrap: a second pass is a no-op.
    let again = ward_ok(&["keys", "rotate", "--rewrap-only"], &data);
    assert!(again.contains("0 data keys re-wrapped"), "{again}");
    // The sealed values are unchanged and open with the re-wrapped keys.
    let embedded = ward::embedded::open(&data, Default::default(), &Default::default())
        .await
        .unwrap();
    let provider = ward_domain::ProviderId::parse("PROV001").unwrap();
    let mrn = ward_domain::Mrn::parse("MRN2").unwrap();
    let patient = embedded.pseudonyms.patient(&provider, &mrn);
    let page = embedded
        .table
        .query(ward_store::Query::partition(
            ward_domain::key_layout::patient_pk(&provider, &patient),
            ward_store::SkCondition::Any,
        ))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0]["firstName"], ward_store::Value::s("Alan"));
    assert_eq!(
        page.items[0]["doctorsNotes"],
        ward_store::Value::s("second visit")
    );
}

#[tokio::test]
async fn after_a_rotation_in_the_background_the_server_re_wraps_while_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let csv = dir.path().join("visits.csv");
    std::fs::write(
        &csv,
        "medical_record_number,date_time,first_name,last_name,doctors_notes\n\
         MRN1,2025-01-01T10:00:00Z,Ada,Lovelace,first visit\n\
         MRN2,2025-01-02T10:00:00Z,Alan,Turing,second visit\n",
    )
    .unwrap();
    ward_ok(
        &["ingest", csv.to_str().unwrap(), "--provider", "PROV001"],
        &data,
    );
    let made = count_after(
        &ward_ok(&["keys", "status"], &data),
        "PROV001          data keys v1: ",
    );
    let rotated = ward_ok(&["keys", "rotate", "--in-background"], &data);
    assert!(rotated.contains("key version 2 added"), "{rotated}");
    assert!(rotated.contains("in the background"), "{rotated}");
    let status = ward_ok(&["keys", "status"], &data);
    assert!(
        status.contains(&format!("PROV001          data keys v1: {made}\n")),
        "nothing re-wrapped yet: {status}"
    );
    assert!(
        status.contains("re-wraps them in the background"),
        "{status}"
    );

    let mut running = crate::helpers::start_server(&data, crate::helpers::Options::default()).await;
    running.rewrap_finished().await;
    // It served meanwhile and serves after: the data reads under the re-wrapped keys.
    let key = ward_ports::Tenants::new(running.state.table.clone())
        .issue_full_key(&ward_domain::ProviderId::parse("PROV001").unwrap(), true)
        .await
        .unwrap()
        .0;
    let app = crate::helpers::app_for(running, key);
    let (status, records) = app.get("/v1/patients/MRN2/records", &app.key).await;
    assert_eq!(status, 200, "{records}");
    assert_eq!(records["records"][0]["doctorsNotes"], "second visit");
    app.stop().await;
    let status = ward_ok(&["keys", "status"], &data);
    assert!(
        status.contains("every data key is wrapped under version 2"),
        "{status}"
    );
    assert!(
        !status.contains("PROV001          data keys v1"),
        "{status}"
    );
}

#[tokio::test]
async fn kill_9_during_a_re_wrap_then_rewrap_only_finishes_it_and_the_data_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let csv = dir.path().join("visits.csv");
    // One patient per row: thousands of data keys to re-wrap, each a durable write.
    let mut text =
        "medical_record_number,date_time,first_name,last_name,doctors_notes\n".to_owned();
    for n in 0..3000 {
        text.push_str(&format!(
            "MRN{n:05},2025-01-01T10:00:00Z,Ada,Lovelace,visit {n}\n"
        ));
    }
    std::fs::write(&csv, text).unwrap();
    ward_ok(
        &["ingest", csv.to_str().unwrap(), "--provider", "PROV001"],
        &data,
    );
    let made = count_after(
        &ward_ok(&["keys", "status"], &data),
        "PROV001          data keys v1: ",
    );
    assert!(made >= 3000, "{made}");
    // Killed once the new version is in the key file and the re-wrap is under way.
    let mut rotate = Command::new(env!("CARGO_BIN_EXE_ward"));
    rotate
        .args(["keys", "rotate", "--data-dir"])
        .arg(&data)
        .env_remove("WARD_KEYS_DIR");
    crate::helpers::kill_at_first_rewrap_progress(rotate);
    let status = ward_ok(&["keys", "status"], &data);
    let (old, new) = (
        count_after(&status, "PROV001          data keys v1: "),
        count_after(&status, ", v2: "),
    );
    assert!(old > 0 && new >= 1000, "the kill landed mid-way: {status}");
    assert_eq!(old + new, made, "{status}");

    let finished = ward_ok(&["keys", "rotate", "--rewrap-only"], &data);
    assert!(
        finished.contains(&format!("PROV001          {old} data keys re-wrapped")),
        "{finished}"
    );
    let status = ward_ok(&["keys", "status"], &data);
    assert!(
        status.contains(&format!("PROV001          data keys v2: {made}\n")),
        "{status}"
    );
    // Every patient's records read under its re-wrapped key.
    let running = crate::helpers::start_server(&data, crate::helpers::Options::default()).await;
    let key = ward_ports::Tenants::new(running.state.table.clone())
        .issue_full_key(&ward_domain::ProviderId::parse("PROV001").unwrap(), true)
        .await
        .unwrap()
        .0;
    let app = crate::helpers::app_for(running, key);
    for n in [0, 999, 1000, 2999] {
        let (status, records) = app
            .get(&format!("/v1/patients/MRN{n:05}/records"), &app.key)
            .await;
        assert_eq!(status, 200, "{records}");
        assert_eq!(records["records"][0]["doctorsNotes"], format!("visit {n}"));
    }
    app.stop().await;
}
