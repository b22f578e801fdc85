//! The embedded store reads a visit file in its key order (sorted through temporary
//! files) before writing it; DynamoDB reads it in file order. The order must change no
//! outcome, record or listed problem.

use serde_json::Value;

use crate::crash::{errors_csv, normalized_records};
use crate::helpers::{HEADER, Options, counts, spawn_app_with};

/// 2,000 rows over 150 patients in six offsets: quoted notes with commas and line
/// breaks, rows repeated later in the file (duplicates) or changed (conflicts), and rows
/// rejected for several reasons.
fn mixed_file() -> String {
    let mut csv = HEADER.to_owned();
    let offsets = ["Z", "+02:00", "-07:00", "+05:30", "-03:00", "+09:00"];
    let row = |i: u64, notes: &str| {
        format!(
            "P{},2021-0{}-{:02}T{:02}:{:02}:00{},First{},Last,{notes}\n",
            (i * 7919) % 150,
            1 + i % 9,
            1 + i % 28,
            i % 24,
            (i * 13) % 60,
            offsets[(i % 6) as usize],
            i % 5,
        )
    };
    for i in 0..2_000u64 {
        match i % 50 {
            7 => csv.push_str(&format!("P{i},2021-02-30T10:00:00Z,A,B,\n")),
            19 => csv.push_str(&format!(",2021-01-01T10:00:00Z,A,B,row {i}\n")),
            23 if i > 100 => csv.push_str(&row(i - 100, "")), // a repeat: duplicate
            31 if i > 100 => csv.push_str(&row(i - 100, "changed")), // conflict
            // Two lines on: in the same sorted run as the row it contradicts.
            41 => csv.push_str(&row(i - 2, "changed again")),
            _ if i % 3 == 0 => csv.push_str(&row(i, &format!("\"note {i}, with\r\na break\"\n"))),
            _ => csv.push_str(&row(i, "")),
        }
    }
    csv
}

/// The first 300 rows again, every other one changed: stored records the file's rows
/// then match (duplicate) or contradict (conflict).
fn earlier_file(file: &str) -> String {
    let mut earlier = HEADER.to_owned();
    for (n, line) in file.split_inclusive('\n').skip(1).take(300).enumerate() {
        if line.starts_with('P') && n % 2 == 1 && !line.contains('"') {
            earlier.push_str(&line.replace(",Last,", ",Other,"));
        } else if !line.contains('"') {
            earlier.push_str(line);
        }
    }
    earlier
}

#[tokio::test]
async fn key_order_and_file_order_give_the_same_outcomes_records_and_error_list() {
    let file = mixed_file();
    let earlier = earlier_file(&file);
    let mut runs = Vec::new();
    for key_order in [false, true] {
        let mut options = Options::default();
        options.ingest.key_order = Some(key_order);
        // A few kilobytes: dozens of sorted runs spilled to disk and merged.
        options.ingest.sort_buffer_bytes = 8 * 1024;
        let app = spawn_app_with(options).await;
        let first = app.upload_and_wait(earlier.as_bytes()).await;
        let upload = app.upload_and_wait(file.as_bytes()).await;
        assert_eq!(upload["status"], "completed", "{upload}");
        let [first_id, id] = [&first, &upload].map(|u| u["uploadId"].as_str().unwrap().to_owned());
        let anonymous = |text: String| text.replace(&first_id, "EARLIER").replace(&id, "UPLOAD");
        let mut report = upload["report"].clone();
        for field in ["durationMs", "attempts"] {
            report.as_object_mut().unwrap().remove(field);
        }
        runs.push((
            counts(&upload),
            anonymous(report.to_string()),
            anonymous(errors_csv(&app, &id).await),
            normalized_records(&app, &id).await,
        ));
        app.stop().await;
    }
    let [rows, inserted, duplicate, conflict, rejected] = runs[0].0;
    assert_eq!(rows, 2_000);
    assert!(
        inserted > 1_000 && duplicate > 20 && conflict > 20 && rejected >= 80,
        "the file exercises every outcome: {:?}",
        runs[0].0
    );
    assert_eq!(runs[0].0, runs[1].0, "the same outcomes");
    assert_eq!(
        runs[0].1, runs[1].1,
        "the same report, first problems included"
    );
    assert_eq!(runs[0].2, runs[1].2, "the same error list, in line order");
    let records: &Vec<Value> = &runs[0].3;
    assert_eq!(records.len() as u64, inserted);
    assert_eq!(&runs[1].3, records, "the same records");
}

/// Read in key order, a file found unusable part-way (here: a quote never closed at line
/// 40, so the record outgrows the limit) has
/// written no record when it fails; read in file order, the rows before that point are
/// already stored.
#[tokio::test]
async fn in_key_order_a_file_that_fails_part_way_writes_no_record() {
    let mut file = HEADER.as_bytes().to_vec();
    for i in 0..100 {
        if i == 38 {
            file.extend_from_slice(b"P38,2021-01-01T10:00:00Z,A,B,\"never closed");
            file.extend(std::iter::repeat_n(b'x', 3 * 1024 * 1024));
        } else {
            file.extend_from_slice(format!("P{i},2021-01-01T10:00:00Z,A,B,\n").as_bytes());
        }
    }
    for (key_order, stored) in [(None, 0), (Some(false), 1)] {
        let mut options = Options::default();
        options.ingest.key_order = key_order;
        let app = spawn_app_with(options).await;
        let upload = app.upload_and_wait(&file).await;
        assert_eq!(upload["status"], "failed", "{upload}");
        let failure = upload["report"]["failure"].as_str().unwrap();
        assert!(
            failure.contains("the record starting at line 40 is longer"),
            "{failure}"
        );
        let (status, page) = app.get_patient_records("P1", "").await;
        assert_eq!(status, 200);
        assert_eq!(
            page["records"].as_array().unwrap().len(),
            stored,
            "key order {key_order:?}: {page}"
        );
        app.stop().await;
    }
}
