//! The EMR model on every adapter of the table port: the same scenarios on the embedded
//! store and on DynamoDB Local (at `WARD_DYNAMODB_ENDPOINT`, which `scripts/test` starts).

#[macro_use]
mod scenarios;

mod embedded {
    use ward_store_embedded::{EmbeddedOptions, EmbeddedTable};

    async fn open() -> (EmbeddedTable, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let table = EmbeddedTable::open(&dir.path().join("ward.redb"), &EmbeddedOptions::default())
            .expect("open store");
        (table, dir)
    }

    emr_suite!(open().await);
}

mod dynamodb {
    use ward_store_dynamodb::DynamoTable;

    async fn open() -> (DynamoTable, ()) {
        let endpoint = std::env::var("WARD_DYNAMODB_ENDPOINT").expect(
            "WARD_DYNAMODB_ENDPOINT is not set: run scripts/test (it starts DynamoDB Local)",
        );
        let table = DynamoTable::local(&endpoint, "ward-emr-tests");
        table
            .create_table_if_missing()
            .await
            .expect("create the test table");
        (table, ())
    }

    emr_suite!(open().await);
}
