//! Upload URLs: SigV4 query-signed PUTs, create-only through a signed `If-None-Match: *`.
//! s3s-fs (in this process) checks signatures, expiry and signed headers as S3 does; moto
//! (which checks no signatures) shows the URL's shape works against the server the
//! end-to-end test uses.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use ward_aws::{AwsConnection, S3Settings, S3UploadUrls, StaticCredentials, s3_object_store};
use ward_ports::PresignedPut;

const ACCESS_KEY: &str = "ward-test-key";
const SECRET_KEY: &str = "ward-test-secret-0123456789";

/// An S3 server that verifies SigV4, on a free port; the bucket `ward-uploads` exists.
async fn s3s_server() -> (String, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("ward-uploads")).unwrap();
    let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let _ = ConnBuilder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), root)
}

fn settings(endpoint: &str, bucket: &str, secret: &str) -> S3Settings {
    S3Settings {
        bucket: bucket.into(),
        connection: AwsConnection {
            region: Some("us-east-1".into()),
            endpoint: Some(endpoint.into()),
            credentials: Some(StaticCredentials {
                access_key_id: ACCESS_KEY.into(),
                secret_access_key: secret.into(),
            }),
        },
    }
}

fn urls(settings: &S3Settings) -> S3UploadUrls {
    S3UploadUrls::new(Arc::new(s3_object_store(settings).unwrap()), settings)
}

async fn put(presigned: &PresignedPut, body: &'static str) -> reqwest::Response {
    let mut request = reqwest::Client::new().put(&presigned.url).body(body);
    for (name, value) in &presigned.headers {
        request = request.header(name, value);
    }
    request.send().await.unwrap()
}

const KEY: &str = "PROV001/uploaded/20250101T000000Z-0000000000000001.csv";

#[tokio::test]
async fn a_presigned_put_is_accepted_once_and_refused_when_tampered_expired_or_stripped() {
    let (endpoint, root) = s3s_server().await;
    let urls = urls(&settings(&endpoint, "ward-uploads", SECRET_KEY));
    let presigned = urls
        .presign(KEY, SystemTime::now(), Duration::from_secs(300))
        .await
        .unwrap();
    assert!(
        presigned.url.contains("X-Amz-Signature="),
        "{}",
        presigned.url
    );
    assert!(
        presigned
            .url
            .contains("X-Amz-SignedHeaders=content-type%3Bhost%3Bif-none-match"),
        "{}",
        presigned.url
    );

    // Tampered: another object key under the same signature.
    let mut tampered = presigned.clone();
    tampered.url = presigned.url.replace("PROV001", "PROV002");
    assert_eq!(put(&tampered, "mrn\n").await.status(), 403);
    // Tampered: one signature character changed.
    let mut tampered = presigned.clone();
    let at = tampered.url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let flipped = if &tampered.url[at..=at] == "0" {
        "1"
    } else {
        "0"
    };
    tampered.url.replace_range(at..=at, flipped);
    assert_eq!(put(&tampered, "mrn\n").await.status(), 403);
    // A signed header left out (the create-only condition).
    let mut stripped = presigned.clone();
    stripped.headers.retain(|(name, _)| name != "if-none-match");
    assert_eq!(put(&stripped, "mrn\n").await.status(), 403);
    // Signed by other keys.
    let forged = urls_with_secret(&endpoint, "not-the-secret")
        .presign(KEY, SystemTime::now(), Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(put(&forged, "mrn\n").await.status(), 403);
    // Expired: signed an hour ago for a minute.
    let expired = urls
        .presign(
            KEY,
            SystemTime::now() - Duration::from_secs(3600),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(put(&expired, "mrn\n").await.status(), 403);
    assert!(
        !root.path().join("ward-uploads").join(KEY).exists(),
        "nothing written by a refused request"
    );

    // The real thing, once.
    let response = put(&presigned, "mrn,when\n").await;
    assert!(response.status().is_success(), "{}", response.status());
    let stored = std::fs::read_to_string(root.path().join("ward-uploads").join(KEY)).unwrap();
    assert_eq!(stored, "mrn,when\n");
    // Replayed: create-only.
    assert_eq!(put(&presigned, "other\n").await.status(), 412);
    let stored = std::fs::read_to_string(root.path().join("ward-uploads").join(KEY)).unwrap();
    assert_eq!(stored, "mrn,when\n", "the first upload is kept");
}

fn urls_with_secret(endpoint: &str, secret: &str) -> S3UploadUrls {
    urls(&settings(endpoint, "ward-uploads", secret))
}

#[tokio::test]
async fn presigned_puts_work_against_moto_and_stay_create_only() {
    let endpoint = super::moto_endpoint();
    let bucket = super::unique("ward-presign");
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    let urls = urls(&settings(&endpoint, &bucket, SECRET_KEY));
    let presigned = urls
        .presign(KEY, SystemTime::now(), Duration::from_secs(300))
        .await
        .unwrap();
    assert!(put(&presigned, "mrn\n").await.status().is_success());
    assert_eq!(put(&presigned, "mrn\n").await.status(), 412);
}
