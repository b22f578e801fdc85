//! The DynamoDB adapter runs the table conformance suite, unchanged, against the server at
//! `WARD_DYNAMODB_ENDPOINT`: DynamoDB Local, which `scripts/test` installs (npm package
//! `amplify-dynamodb-simulator`, which ships DynamoDBLocal.jar) and starts on 127.0.0.1.

use ward_store_dynamodb::DynamoTable;

async fn open_table() -> (DynamoTable, ()) {
    let endpoint = std::env::var("WARD_DYNAMODB_ENDPOINT").expect(
        "WARD_DYNAMODB_ENDPOINT is not set: run scripts/test (it starts DynamoDB Local) or point it at a DynamoDB server",
    );
    let table = DynamoTable::local(&endpoint, "ward-conformance");
    table
        .create_table_if_missing()
        .await
        .expect("create the test table");
    (table, ())
}

ward_store::table_conformance_suite!(open_table());
