//! Tenants never leak: every provider route, called with another provider's key, answers
//! as if the resource did not exist.

use crate::helpers::{HEADER, spawn_app};

#[tokio::test]
async fn another_providers_key_sees_nothing_of_this_one() {
    let app = spawn_app().await;
    let upload = app
        .upload_and_wait(
            format!("{HEADER}SHARED1,2025-03-26T10:30:00Z,John,Doe,secret note\n").as_bytes(),
        )
        .await;
    let id = upload["uploadId"].as_str().unwrap();
    for path in [
        format!("/v1/uploads/{id}"),
        format!("/v1/uploads/{id}/errors.csv"),
        format!("/v1/uploads/{id}/records"),
    ] {
        let (status, body) = app.get(&path, &app.other_key).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["type"], "urn:ward:problem:not-found");
        assert!(!body.to_string().contains("secret note"));
    }
    // The same MRN in the other tenant is a different patient: nothing comes back.
    let (status, page) = app
        .get("/v1/patients/SHARED1/records", &app.other_key)
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["records"].as_array().unwrap().len(), 0);
    let (_, list) = app.get("/v1/uploads", &app.other_key).await;
    assert_eq!(list["uploads"].as_array().unwrap().len(), 0);
    // A cursor minted for this provider's partition is refused in the other's.
    let more = format!("{HEADER}SHARED1,2025-03-27T10:30:00Z,John,Doe,x\n");
    app.upload_and_wait(more.as_bytes()).await;
    let (_, page) = app
        .get("/v1/patients/SHARED1/records?limit=1", &app.key)
        .await;
    let cursor = page["nextCursor"].as_str().unwrap();
    let (status, body) = app
        .get(
            &format!("/v1/patients/SHARED1/records?limit=1&cursor={cursor}"),
            &app.other_key,
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("cursor")),
        "{body}"
    );
    let (_, uploads) = app.get("/v1/uploads?limit=1", &app.key).await;
    let cursor = uploads["nextCursor"].as_str().unwrap();
    let (status, _) = app
        .get(
            &format!("/v1/uploads?limit=1&cursor={cursor}"),
            &app.other_key,
        )
        .await;
    assert_eq!(status, 400);
    app.stop().await;
}

#[tokio::test]
async fn an_upload_url_cannot_be_redirected_to_another_provider() {
    let app = spawn_app().await;
    let grant = app.post_upload(&app.key).await;
    let url = grant["url"].as_str().unwrap();
    let forged = url.replace("/PROV001/", "/PROV002/");
    let (status, body) = app
        .put_file(&forged, format!("{HEADER}X,2025-01-01T00:00:00Z,A,B,\n"))
        .await;
    assert_eq!(
        (status, body["type"].as_str()),
        (403, Some("urn:ward:problem:signature-invalid"))
    );
    let (_, list) = app.get("/v1/uploads", &app.other_key).await;
    assert_eq!(list["uploads"].as_array().unwrap().len(), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_page_cursor_works_only_unchanged_and_on_the_list_it_came_from() {
    let app = spawn_app().await;
    let mut csv = HEADER.to_owned();
    for (mrn, day) in [
        ("MRN1", 1),
        ("MRN1", 2),
        ("MRN1", 3),
        ("MRN2", 1),
        ("MRN2", 2),
    ] {
        csv.push_str(&format!(
            "{mrn},2025-03-0{day}T10:00:00Z,Ann,Lee,visit {day}\n"
        ));
    }
    app.upload_and_wait(csv.as_bytes()).await;
    let (status, first) = app.get("/v1/patients/MRN1/records?limit=1", &app.key).await;
    assert_eq!(status, 200, "{first}");
    let token = first["nextCursor"].as_str().unwrap().to_owned();
    // Opaque: no identifier, even decoded.
    let (inner, _tag) = token.rsplit_once('.').expect("a tagged cursor");
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(inner)
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&decoded).contains("MRN"),
        "{token}"
    );
    // It pages on its own list.
    let (status, second) = app
        .get(
            &format!("/v1/patients/MRN1/records?limit=1&cursor={token}"),
            &app.key,
        )
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["records"][0]["dateTime"], "2025-03-02T10:00:00Z");
    // Refused on another patient's list, changed, or without its tag.
    let changed = format!(
        "{}A.{}",
        &inner[..inner.len() - 1],
        token.rsplit_once('.').unwrap().1
    );
    for (path, why) in [
        (
            format!("/v1/patients/MRN2/records?cursor={token}"),
            "another list",
        ),
        (
            format!("/v1/patients/MRN1/records?cursor={changed}"),
            "changed",
        ),
        (
            format!("/v1/patients/MRN1/records?cursor={inner}"),
            "untagged",
        ),
        (format!("/v1/uploads?cursor={token}"), "another route"),
    ] {
        let (status, problem) = app.get(&path, &app.key).await;
        assert_eq!(status, 400, "{why}: {problem}");
        assert_eq!(problem["errors"][0]["field"], "cursor", "{why}: {problem}");
    }
    // Credentials are checked first: without them, or with a made-up key, a bad cursor
    // is refused as any request would be (401), not judged.
    for key in [None, Some("wk_not_a_key")] {
        let (status, problem) = app
            .request(
                reqwest::Method::GET,
                &format!("/v1/patients/MRN1/records?cursor={changed}"),
                key,
            )
            .await;
        assert_eq!(status, 401, "{key:?}: {problem}");
    }
    // A path no route serves is 404 with a cursor too.
    let (status, _) = app
        .get(&format!("/v1/nowhere?cursor={changed}"), &app.key)
        .await;
    assert_eq!(status, 404);
    // Another provider's key with the same cursor on the same path: the store's cursor
    // names this provider's partition, not the other's, and is refused there too.
    let (status, other) = app
        .get(
            &format!("/v1/patients/MRN1/records?cursor={token}"),
            &app.other_key,
        )
        .await;
    assert_eq!(status, 400, "{other}");
    assert!(!other.to_string().contains("visit"), "{other}");
    app.stop().await;
}
