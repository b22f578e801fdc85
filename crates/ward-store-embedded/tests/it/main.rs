//! The embedded adapter runs the table conformance suite, plus its own durability checks.

use ward_store_embedded::{EmbeddedOptions, EmbeddedTable};

async fn open_temporary() -> (EmbeddedTable, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let table = EmbeddedTable::open(&dir.path().join("ward.redb"), &EmbeddedOptions::default())
        .expect("open store");
    (table, dir)
}

ward_store::table_conformance_suite!(open_temporary());

mod reopen;
