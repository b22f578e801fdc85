//! The signed PUT endpoint refuses every request it should, before writing a byte.

use crate::helpers::{HEADER, Options, spawn_app, spawn_app_with};

fn csv() -> String {
    format!("{HEADER}A1,2025-03-26T10:30:00Z,John,Doe,\n")
}

#[tokio::test]
async fn tampered_signatures_and_other_uploads_keys_are_refused() {
    let app = spawn_app().await;
    let grant = app.post_upload(&app.key).await;
    let url = grant["url"].as_str().unwrap();
    let other = app.post_upload(&app.key).await;
    let other_id = other["uploadId"].as_str().unwrap();
    let id = grant["uploadId"].as_str().unwrap();
    let signature_start = url.find("signature=").unwrap() + "signature=".len();
    let mut tampered = url.to_owned();
    let flipped = if &url[signature_start..signature_start + 1] == "0" {
        "1"
    } else {
        "0"
    };
    tampered.replace_range(signature_start..signature_start + 1, flipped);
    let longer_expiry = url.replace("expires=", "expires=9");
    let other_key = url.replace(id, other_id);
    let unsigned = url.split('?').next().unwrap().to_owned();
    for bad in [tampered, longer_expiry, other_key, unsigned] {
        let (status, body) = app.put_file(&bad, csv()).await;
        assert_eq!(
            (status, body["type"].as_str()),
            (403, Some("urn:ward:problem:signature-invalid")),
            "{bad}"
        );
    }
    let (_, upload) = app.get(&format!("/v1/uploads/{other_id}"), &app.key).await;
    assert_eq!(upload["status"], "pending", "nothing was written");
    app.stop().await;
}

#[tokio::test]
async fn a_url_works_once_and_a_replay_is_refused() {
    let app = spawn_app().await;
    let grant = app.post_upload(&app.key).await;
    let url = grant["url"].as_str().unwrap();
    assert_eq!(app.put_file(url, csv()).await.0, 200);
    let (status, body) = app.put_file(url, "medical_record_number\nevil\n").await;
    assert_eq!(
        (status, body["type"].as_str()),
        (409, Some("urn:ward:problem:already-uploaded"))
    );
    let upload = app
        .wait_for_upload(grant["uploadId"].as_str().unwrap())
        .await;
    assert_eq!(
        upload["report"]["counts"]["inserted"], 1,
        "the first file was kept"
    );
    app.stop().await;
}

#[tokio::test]
async fn expired_urls_are_refused() {
    let mut options = Options::default();
    options.api.upload_url_ttl_seconds = -1;
    let app = spawn_app_with(options).await;
    let grant = app.post_upload(&app.key).await;
    let (status, body) = app.put_file(grant["url"].as_str().unwrap(), csv()).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (403, Some("urn:ward:problem:url-expired"))
    );
    app.stop().await;
}

#[tokio::test]
async fn oversized_files_are_refused_while_streaming_and_nothing_is_kept() {
    let mut options = Options::default();
    options.api.max_upload_bytes = 1000;
    let app = spawn_app_with(options).await;
    let grant = app.post_upload(&app.key).await;
    let url = grant["url"].as_str().unwrap();
    let big = format!(
        "{HEADER}{}",
        "A1,2025-03-26T10:30:00Z,John,Doe,padding\n".repeat(100)
    );
    let (status, body) = app.put_file(url, big.clone()).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (413, Some("urn:ward:problem:upload-too-large"))
    );
    // Without a Content-Length the limit is enforced on the streamed bytes.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.as_bytes().chunks(100).map(|c| Ok(c.to_vec())).collect();
    let (status, _) = app
        .put_file(
            url,
            reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
        )
        .await;
    assert_eq!(status, 413);
    let uploaded = app.data_path().join("objects/PROV001/uploaded");
    let kept = std::fs::read_dir(&uploaded).map(|d| d.count()).unwrap_or(0);
    assert_eq!(kept, 0, "no bytes of a refused upload are kept");
    let (_, upload) = app
        .get(
            &format!("/v1/uploads/{}", grant["uploadId"].as_str().unwrap()),
            &app.key,
        )
        .await;
    assert_eq!(upload["status"], "pending");
    assert_eq!(
        app.put_file(url, csv()).await.0,
        200,
        "the URL still takes a file within the limit"
    );
    app.stop().await;
}
