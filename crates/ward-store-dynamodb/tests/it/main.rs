//! The DynamoDB adapter runs the table conformance suite, unchanged, against the server at
//! `WARD_DYNAMODB_ENDPOINT`: DynamoDB Local, which `scripts/test` installs (npm package
//! `amplify-dynamodb-simulator`, which ships DynamoDBLocal.jar) and starts on 127.0.0.1.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use ward_store_dynamodb::DynamoTable;

async fn open_table() -> (DynamoTable, ()) {
    let endpoint = std::env::var("WARD_DYNAMODB_ENDPOINT").expect(
        "WARD_DYNAMODB_ENDPOINT is not set: run scripts/test (it starts DynamoDB Local) or point it at a DynamoDB server",
    );
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "ward-tests"))
        .build();
    let table = DynamoTable::new(Client::from_conf(config), "ward-conformance");
    table
        .create_table_if_missing()
        .await
        .expect("create the test table");
    (table, ())
}

ward_store::table_conformance_suite!(open_table());
