//! Which shape Ward runs in, chosen by configuration: embedded (the data folder: redb, local
//! files, the table-backed queue) or AWS (DynamoDB, S3, SQS). The rest of Ward sees only
//! the ports ([`Backend`]).

use std::path::Path;
use std::sync::Arc;
#[cfg(feature = "aws")]
use std::time::Duration;

use ward_ingest::{IngestContext, IngestSettings};
use ward_ports::{TableJobQueue, UploadUrls};
use ward_store::Table;

#[cfg(feature = "aws")]
use crate::config::{AwsEndpoint, AwsService, Secret};
use crate::config::{EventsKind, ObjectsKind, Settings, StoreKind};
use crate::embedded;

/// The shape to run in.
#[derive(Debug, Clone, Default)]
pub enum Shape {
    /// Everything in the data folder.
    #[default]
    Embedded,
    /// DynamoDB, S3 and SQS.
    #[cfg(feature = "aws")]
    Aws(Box<AwsShape>),
}

/// Where the AWS shape's services are.
#[cfg(feature = "aws")]
#[derive(Debug, Clone)]
pub struct AwsShape {
    /// The DynamoDB table.
    pub table: String,
    /// Create it when missing (local servers).
    pub create_table: bool,
    /// How to reach DynamoDB.
    pub dynamodb: ward_aws::AwsConnection,
    /// The uploads bucket.
    pub s3: ward_aws::S3Settings,
    /// The ingest queue.
    pub queue_url: String,
    /// Its dead-letter queue.
    pub dead_letter_queue_url: String,
    /// How to reach SQS.
    pub sqs: ward_aws::AwsConnection,
    /// Long-poll time of one receive.
    pub wait: Duration,
    /// The key store's DynamoDB table (never the records table).
    pub keys_table: String,
    /// The AWS KMS key that wraps each provider's key-encryption key.
    pub kms_key_id: String,
    /// How to reach AWS KMS.
    pub kms: ward_aws::AwsConnection,
    /// How long a key-encryption key from KMS is kept in memory.
    pub key_cache: Duration,
}

/// The ports, filled.
/// A decorator of the table port, applied before the server or the pipeline use the table:
/// tests record or fail store calls through one; a field-encrypting table is another.
#[derive(Clone)]
pub struct TableLayer(pub Arc<TableDecorator>);

/// What a [`TableLayer`] does: the table underneath in, the table seen above out.
pub type TableDecorator = dyn Fn(Arc<dyn Table>) -> Arc<dyn Table> + Send + Sync;

impl std::fmt::Debug for TableLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TableLayer")
    }
}

impl Backend {
    /// The same backend with its table seen through `layer` (the pipeline's too; the
    /// embedded queue keeps the table underneath).
    pub fn layered(self, layer: &TableLayer) -> Self {
        let table = (layer.0)(Arc::clone(&self.table));
        let mut ctx = IngestContext::new(
            Arc::clone(&table),
            Arc::clone(&self.ctx.pseudonyms),
            Arc::clone(&self.ctx.objects),
            Arc::clone(&self.ctx.queue),
            self.ctx.settings.clone(),
        );
        if let Some(analytics) = &self.ctx.analytics {
            ctx = ctx.with_analytics(Arc::clone(analytics));
        }
        Self {
            table,
            ctx: Arc::new(ctx),
            ..self
        }
    }
}

pub struct Backend {
    /// The record store.
    pub table: Arc<dyn Table>,
    /// The pipeline over table, objects and queue.
    pub ctx: Arc<IngestContext>,
    /// Upload URLs, when clients upload somewhere other than this server (S3).
    pub upload_urls: Option<Arc<dyn UploadUrls>>,
    /// The table-backed queue of the embedded shape (this process owns it).
    pub table_queue: Option<Arc<TableJobQueue>>,
    /// Whether object retention is Ward's job (embedded) or the bucket's lifecycle rules'.
    pub sweeps_objects: bool,
    /// The data keys that seal the store (the embedded shape), re-wrapped in the
    /// background after a rotation.
    pub keys: Option<Arc<ward_protect::DataKeys>>,
}

impl Shape {
    /// The shape the settings file asks for. All three of `[store]`, `[objects]` and
    /// `[events]` name the same shape, or the settings are refused.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let store = settings.store.kind.unwrap_or_default();
        let objects = settings.objects.kind.unwrap_or_default();
        let events = settings.events.kind.unwrap_or_default();
        match (store, objects, events) {
            (StoreKind::Embedded, ObjectsKind::Local, EventsKind::Embedded) => Ok(Self::Embedded),
            (StoreKind::Dynamodb, ObjectsKind::S3, EventsKind::Sqs) => aws_shape(settings),
            (store, objects, events) => anyhow::bail!(
                "[store], [objects] and [events] must name one shape: embedded, local, \
                 embedded (the default) or dynamodb, s3, sqs; got {store}, {objects}, {events}"
            ),
        }
    }
}

#[cfg(not(feature = "aws"))]
fn aws_shape(_: &Settings) -> anyhow::Result<Shape> {
    anyhow::bail!(
        "this ward was built without AWS support; build it with `cargo build --release -p ward --features aws`"
    )
}

#[cfg(feature = "aws")]
fn aws_shape(settings: &Settings) -> anyhow::Result<Shape> {
    let required = |value: &Option<String>, what: &str| {
        value
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the AWS shape needs {what}"))
    };
    let table = settings
        .store
        .table
        .clone()
        .unwrap_or_else(|| "ward".into());
    Ok(Shape::Aws(Box::new(AwsShape {
        keys_table: settings
            .keys
            .table
            .clone()
            .unwrap_or_else(|| format!("{table}-keys")),
        kms_key_id: required(
            &settings.keys.kms_key_id,
            "[keys] kms_key_id (WARD_KMS_KEY_ID): the AWS KMS key that wraps patient data keys",
        )?,
        kms: connection(settings.aws.endpoint(AwsService::Kms)),
        key_cache: Duration::from_secs(settings.keys.cache_seconds.unwrap_or(300).clamp(1, 3600)),
        table,
        create_table: settings.store.create_table.unwrap_or(false),
        dynamodb: connection(settings.aws.endpoint(AwsService::Dynamodb)),
        s3: ward_aws::S3Settings {
            bucket: required(&settings.objects.bucket, "[objects] bucket")?,
            connection: connection(settings.aws.endpoint(AwsService::S3)),
        },
        queue_url: required(&settings.events.queue_url, "[events] queue_url")?,
        dead_letter_queue_url: required(
            &settings.events.dead_letter_queue_url,
            "[events] dead_letter_queue_url",
        )?,
        sqs: connection(settings.aws.endpoint(AwsService::Sqs)),
        wait: Duration::from_secs(settings.events.wait_seconds.unwrap_or(20).min(20)),
    })))
}

#[cfg(feature = "aws")]
fn connection(endpoint: AwsEndpoint) -> ward_aws::AwsConnection {
    ward_aws::AwsConnection {
        region: endpoint.region,
        endpoint: endpoint.endpoint,
        credentials: endpoint.keys.and_then(|(id, secret): (String, Secret)| {
            secret.expose().map(|secret| ward_aws::StaticCredentials {
                access_key_id: id,
                secret_access_key: secret.to_owned(),
            })
        }),
    }
}

/// Opens the shape's adapters.
pub async fn open(
    shape: &Shape,
    data_dir: &Path,
    ingest: IngestSettings,
    store: &embedded::EmbeddedStore,
) -> anyhow::Result<Backend> {
    match shape {
        Shape::Embedded => {
            let embedded = embedded::open(data_dir, ingest, store).await?;
            Ok(Backend {
                table: embedded.table,
                ctx: embedded.ctx,
                upload_urls: None,
                table_queue: Some(embedded.queue),
                sweeps_objects: true,
                keys: embedded.keys,
            })
        }
        #[cfg(feature = "aws")]
        Shape::Aws(aws) => open_aws(aws, ingest).await,
    }
}

#[cfg(feature = "aws")]
async fn open_aws(aws: &AwsShape, ingest: IngestSettings) -> anyhow::Result<Backend> {
    use anyhow::Context as _;

    let table = ward_store_dynamodb::DynamoTable::new(aws.dynamodb.dynamodb().await, &aws.table);
    if aws.create_table {
        table
            .create_table_if_missing()
            .await
            .with_context(|| format!("cannot create the DynamoDB table {}", aws.table))?;
    }
    let protected = aws_protection(aws, Arc::new(table)).await?;
    let table = protected.table;
    let pseudonyms = protected.pseudonyms;
    let s3 = Arc::new(ward_aws::s3_object_store(&aws.s3).context("cannot configure S3")?);
    let upload_urls: Arc<dyn UploadUrls> =
        Arc::new(ward_aws::S3UploadUrls::new(Arc::clone(&s3), &aws.s3));
    let queue = ward_aws::SqsJobQueue::new(
        aws.sqs.sqs().await,
        &aws.queue_url,
        &aws.dead_letter_queue_url,
        aws.wait,
    );
    let ctx = Arc::new(crate::analytics_cli::attach(IngestContext::new(
        Arc::clone(&table),
        pseudonyms,
        s3,
        Arc::new(queue),
        ingest,
    )));
    Ok(Backend {
        table,
        ctx,
        upload_urls: Some(upload_urls),
        table_queue: None,
        sweeps_objects: false,
        keys: Some(protected.keys),
    })
}

/// The AWS shape's key source (AWS KMS) and its key store (the key-store table), which
/// holds the data keys too.
#[cfg(feature = "aws")]
pub async fn aws_keys(
    aws: &AwsShape,
    create: bool,
) -> anyhow::Result<(ward_aws::KmsKeys, Arc<dyn Table>)> {
    use anyhow::Context as _;

    let store =
        ward_store_dynamodb::DynamoTable::new(aws.dynamodb.dynamodb().await, &aws.keys_table);
    if aws.create_table {
        store
            .create_table_if_missing()
            .await
            .with_context(|| format!("cannot create the key-store table {}", aws.keys_table))?;
    }
    let store: Arc<dyn Table> = Arc::new(store);
    ward_aws::KmsKeys::open(
        aws.kms.kms().await,
        &aws.kms_key_id,
        Arc::clone(&store),
        aws.key_cache,
        create,
    )
    .await
    .map(|kms| (kms, store))
    .with_context(|| {
        format!(
            "cannot read the keys of the key-store table {} with the KMS key {}",
            aws.keys_table, aws.kms_key_id
        )
    })
}

/// `table` (the records table) sealed by keys from AWS KMS, after its protection record
/// is checked against them (or written, on a new table).
#[cfg(feature = "aws")]
async fn aws_protection(
    aws: &AwsShape,
    table: Arc<dyn Table>,
) -> anyhow::Result<crate::protection::Protected> {
    use ward_protect::KeyEncryptionKeys as _;

    let marker = crate::protection::protection_record(&*table).await?;
    let (kms, key_store) = aws_keys(aws, marker.is_none()).await?;
    let store = format!("the DynamoDB table {}", aws.table);
    let wrong_keys = format!(
        "the key-store table {} (with the KMS key {}) is not the one {store} was written \
         with; point [keys] table / WARD_KEYS_TABLE at that table's key store (without it \
         the data cannot be read)",
        aws.keys_table, aws.kms_key_id
    );
    let check = kms.pseudonym("", "ward key check");
    let unsealed = format!(
        "{store} was written by a Ward without encryption at rest, and this version keeps \
         patient data only encrypted; stop every process of the deployment that writes it \
         (the functions' triggers) and run `ward migrate --config FILE` to encrypt it in place \
         (docs/encryption.md#migrating)"
    );
    crate::protection::settle_record(&*table, marker, &check, &store, &wrong_keys, &unsealed)
        .await?;
    let secret = kms.pseudonym_secret();
    Ok(crate::protection::protected(
        table,
        key_store,
        Arc::new(kms),
        &secret,
    ))
}
