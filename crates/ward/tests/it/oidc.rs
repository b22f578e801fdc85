//! OIDC bearer tokens from a real, third-party OpenID provider: npm `oidc-provider`, which
//! scripts/test installs and starts on 127.0.0.1 (`WARD_OIDC_ISSUER`, scripts/local-oidc).
//! Its client-credentials JWT access tokens stand for the people of a Cognito-shaped user
//! pool (provider, groups, clinician id or MRN as claims). The tokens a real provider never
//! issues (expired, wrong audience, `alg: none`, ...) come from its test endpoint, signed
//! with its own current key wherever a key signs at all. One test, in order: key rotation
//! at its end must not race another test's tokens.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use ward_domain::ProviderId;
use ward_identity::{ClaimMapping, OidcSettings, oidc::Algorithm};

use crate::helpers::{Options, TestApp, spawn_app_with};

const AUDIENCE: &str = "https://ward.test/api";

fn issuer() -> String {
    std::env::var("WARD_OIDC_ISSUER")
        .expect("WARD_OIDC_ISSUER is not set: run scripts/test (it starts the OpenID provider)")
}

/// A real access token of the provider's test client `client` (one person).
async fn token(http: &reqwest::Client, client: &str) -> String {
    let response = http
        .post(format!("{}/token", issuer()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client),
            ("client_secret", &format!("secret-{client}")),
            ("resource", AUDIENCE),
            ("scope", "api"),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token for {client}: {body}"))
        .to_owned()
}

/// A JSON answer of the provider's test endpoints (`/test/...`).
async fn test_endpoint(http: &reqwest::Client, path: &str) -> Value {
    http.get(format!("{}/test/{path}", issuer()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn crafted(http: &reqwest::Client, case: &str) -> String {
    test_endpoint(http, &format!("token?case={case}")).await["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn key_set_fetches(http: &reqwest::Client) -> u64 {
    test_endpoint(http, "stats").await["keySetFetches"]
        .as_u64()
        .unwrap()
}

async fn me(app: &TestApp, token: &str) -> (u16, Value) {
    app.get("/v1/me", token).await
}

#[tokio::test]
async fn tokens_of_the_openid_provider_sign_people_in_and_every_forgery_is_refused() {
    let mut options = Options::default();
    options.api.oidc = Some(OidcSettings {
        issuer: issuer(),
        audience: AUDIENCE.into(),
        algorithms: vec![Algorithm::RS256, Algorithm::ES256],
        leeway: 30,
        refetch_cooldown_seconds: 1,
        claims: ClaimMapping::default(),
    });
    let app = spawn_app_with(options).await;
    ward_ports::Tenants::new(app.running.as_ref().unwrap().state.table.clone())
        .create(&ProviderId::parse("PROVOIDC").unwrap(), None)
        .await
        .unwrap();
    let http = reqwest::Client::new();

    // The claim mapping: provider, role from the groups, the link.
    let clinician = token(&http, "oidc-clinician").await;
    let (status, who) = me(&app, &clinician).await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["kind"], "user");
    assert_eq!(who["signIn"], "oidc");
    assert_eq!(who["providerId"], "PROVOIDC");
    assert_eq!(who["role"], "clinician");
    assert_eq!(who["clinicianId"], "C1");
    assert_eq!(who["userId"], "oidc-clinician");
    let patient = token(&http, "oidc-patient").await;
    assert_eq!(me(&app, &patient).await.1["mrn"], "MRN-O1");

    // The roles act: the admin registers a patient; the clinician, with no care relation,
    // does not reach it; the patient reaches only its own record; front desk no clinical
    // route; a token of another provider nothing of this one.
    let admin = token(&http, "oidc-admin").await;
    let (status, made) = app
        .post_json(
            "/v1/patients",
            &admin,
            json!({"mrn": "MRN-O1", "firstName": "Ann", "lastName": "Lee",
                   "dateOfBirth": "1985-06-15", "sex": "FEMALE", "clinic": "NORTH"}),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(app.get("/v1/patients/MRN-O1", &clinician).await.0, 404);
    assert_eq!(app.get("/v1/patients/MRN-O1", &patient).await.0, 200);
    assert_eq!(app.get("/v1/patients/MRN-O2", &patient).await.0, 404);
    let desk = token(&http, "oidc-front-desk").await;
    assert_eq!(
        app.get("/v1/patients/MRN-O1/clinical-records", &desk)
            .await
            .0,
        403
    );
    let elsewhere = token(&http, "oidc-other-provider").await;
    assert_eq!(me(&app, &elsewhere).await.1["providerId"], "PROV002");
    assert_eq!(app.get("/v1/patients/MRN-O1", &elsewhere).await.0, 404);
    // Groups that name no role: no principal.
    assert_eq!(me(&app, &token(&http, "oidc-no-role").await).await.0, 401);
    // The audit trail names the person and how it signed in.
    crate::emr::flush_audit(&app).await;
    let (_, audit) = app.get("/v1/audit?patient=MRN-O1", &admin).await;
    assert!(
        audit["items"].as_array().unwrap().iter().any(|event| {
            event["actor"] == "oidc:oidc-clinician"
                && event["signIn"] == "oidc"
                && event["role"] == "clinician"
                && event["result"] == "NOT_FOUND"
        }),
        "{audit}"
    );

    // Forgeries and tokens out of their time, each refused with 401.
    let valid = crafted(&http, "valid").await;
    assert_eq!(
        me(&app, &valid).await.0,
        200,
        "the crafted baseline verifies"
    );
    for case in [
        "expired",
        "not-yet-valid",
        "wrong-issuer",
        "wrong-audience",
        "none",
        "hs256-public-key",
    ] {
        let forged = crafted(&http, case).await;
        let (status, problem) = me(&app, &forged).await;
        assert_eq!(status, 401, "{case}: {problem}");
        assert_eq!(problem["type"], "urn:ward:problem:unauthorized", "{case}");
    }
    // A payload changed after signing: a patient raised to administrator.
    let mut parts: Vec<String> = patient.split('.').map(str::to_owned).collect();
    let mut claims: Value = {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&parts[1])
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    claims["cognito:groups"] = json!(["provider_admin"]);
    parts[1] = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
    };
    assert_eq!(app.get("/v1/audit", &parts.join(".")).await.0, 401);

    // An unknown kid refetches the key set, but at most once per cooldown, however many
    // such tokens come.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = key_set_fetches(&http).await;
    let stranger = crafted(&http, "unknown-kid").await;
    for _ in 0..5 {
        assert_eq!(me(&app, &stranger).await.0, 401);
    }
    assert_eq!(key_set_fetches(&http).await, before + 1);

    // The provider rotates its signing key: a token of the new key verifies after the
    // refetch its unknown kid causes.
    let rotated: Value = http
        .request(Method::POST, format!("{}/test/rotate", issuer()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rotated["signing"], "key-b");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new_key = token(&http, "oidc-admin").await;
    assert!(new_key.starts_with("eyJ"));
    let (status, who) = me(&app, &new_key).await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["role"], "provider_admin");
    // The old key is still published: tokens signed before the rotation still work.
    assert_eq!(me(&app, &admin).await.0, 200);
    app.stop().await;
}
