//! Users, logins and Ward's own tokens on a real embedded table.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ward_domain::{ClinicianId, ProviderId, UserId, key_layout};
use ward_store::{Condition, Item, PK, SK, Table, Value};
use ward_store_embedded::EmbeddedTable;

use super::*;

async fn table() -> (tempfile::TempDir, Arc<dyn Table>) {
    let dir = tempfile::tempdir().unwrap();
    let table: Arc<dyn Table> =
        Arc::new(EmbeddedTable::open(&dir.path().join("t.redb"), &Default::default()).unwrap());
    for provider in ["PROV001", "PROV002"] {
        let mut profile = Item::new();
        profile.insert(PK.into(), Value::s(format!("PROV#{provider}")));
        profile.insert(SK.into(), Value::s(key_layout::PROVIDER_SK));
        table.put(profile, Condition::NotExists).await.unwrap();
    }
    (dir, table)
}

fn provider() -> ProviderId {
    ProviderId::parse("PROV001").unwrap()
}

const PASSWORD: &str = "a long enough passphrase";

async fn with_clinician(identity: &Identity) -> User {
    let hash = password::hash(PASSWORD).await.unwrap();
    identity
        .users
        .create(
            &provider(),
            &UserId::parse("dr.ada").unwrap(),
            Role::Clinician,
            Link::Clinician(ClinicianId::parse("C1").unwrap()),
            hash,
            1_000,
        )
        .await
        .unwrap()
}

fn now() -> i64 {
    ward_domain::UtcInstant::now().unix_seconds()
}

fn now_millis() -> i64 {
    ward_domain::UtcInstant::now().unix_millis()
}

#[tokio::test]
async fn a_user_logs_in_with_its_password_and_its_token_says_who_it_is() {
    let (_dir, table) = table().await;
    let identity = Identity::new(table, 900, None);
    with_clinician(&identity).await;
    let (issued, user) = identity
        .logins
        .login("PROV001", "dr.ada", PASSWORD, None, now_millis())
        .await
        .unwrap();
    assert_eq!(user.id.as_str(), "dr.ada");
    assert!(issued.expires_at > now() + 800);
    let signed_in = identity
        .verify_bearer(&issued.token)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(signed_in.provider, provider());
    assert_eq!(signed_in.subject, "dr.ada");
    assert_eq!(signed_in.role, Role::Clinician);
    assert_eq!(signed_in.link.clinician().unwrap().as_str(), "C1");
    assert_eq!(signed_in.method, SignInMethod::Password);
    // Wrong password, unknown user, other provider, disabled user: the same refusal.
    assert!(matches!(
        identity.logins.login("PROV001", "dr.ada", "not the passphrase", None, now_millis()).await,
        Err(LoginError::WrongPassword(user)) if user.id.as_str() == "dr.ada"
    ));
    for (provider, user, password) in [
        ("PROV001", "dr.nobody", PASSWORD),
        ("PROV002", "dr.ada", PASSWORD),
        ("PROV#01", "dr.ada", PASSWORD),
    ] {
        assert!(matches!(
            identity
                .logins
                .login(provider, user, password, None, now_millis())
                .await,
            Err(LoginError::Invalid)
        ));
    }
    let ada = UserId::parse("dr.ada").unwrap();
    identity
        .users
        .update(
            &provider(),
            &ada,
            UserChange {
                disabled: Some(true),
                ..UserChange::default()
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        identity
            .logins
            .login("PROV001", "dr.ada", PASSWORD, None, now_millis())
            .await,
        Err(LoginError::Invalid)
    ));
}

#[tokio::test]
async fn failed_logins_slow_the_account_down_and_a_success_resets_them() {
    let (_dir, table) = table().await;
    let identity = Identity::new(table, 900, None);
    with_clinician(&identity).await;
    let t = 10_000_000;
    for _ in 0..login::FREE_FAILURES {
        assert!(matches!(
            identity
                .logins
                .login("PROV001", "dr.ada", "wrong password!", None, t)
                .await,
            Err(LoginError::WrongPassword(_))
        ));
    }
    // Now even the right password waits: the attempt is refused without a check.
    assert!(matches!(
        identity
            .logins
            .login("PROV001", "dr.ada", PASSWORD, None, t)
            .await,
        Err(LoginError::Throttled(1))
    ));
    // The wait is a whole second from the last failure, not up to the next second.
    assert!(matches!(
        identity
            .logins
            .login("PROV001", "dr.ada", PASSWORD, None, t + 999)
            .await,
        Err(LoginError::Throttled(1))
    ));
    let ada = identity
        .users
        .get(&provider(), &UserId::parse("dr.ada").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ada.failed_logins, login::FREE_FAILURES);
    // After the wait, the right password works (its token is issued at `t` + 1 s, long
    // expired by the clock, which is not what this test is about) and resets the count.
    identity
        .logins
        .login("PROV001", "dr.ada", PASSWORD, None, t + 1000)
        .await
        .unwrap();
    let ada = identity
        .users
        .get(&provider(), &ada.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ada.failed_logins, 0);
}

#[tokio::test]
async fn an_address_guessing_many_accounts_is_throttled() {
    let (_dir, table) = table().await;
    let identity = Identity::new(table, 900, None);
    let address = "127.0.0.9".parse().unwrap();
    for i in 0..login::ADDRESS_FAILURES {
        let user = format!("user{i}");
        assert!(matches!(
            identity
                .logins
                .login("PROV001", &user, "guess guess guess", Some(address), 50_000)
                .await,
            Err(LoginError::Invalid)
        ));
    }
    assert!(matches!(
        identity
            .logins
            .login(
                "PROV001",
                "user0",
                "guess guess guess",
                Some(address),
                51_000
            )
            .await,
        Err(LoginError::Throttled(_))
    ));
}

fn part(token: &str, index: usize) -> serde_json::Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn with_part(token: &str, index: usize, value: &serde_json::Value) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[index] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap());
    parts.join(".")
}

#[tokio::test]
async fn wards_tokens_refuse_tampering_expiry_and_other_signers() {
    let (_dir, table) = table().await;
    let identity = Identity::new(table.clone(), 900, None);
    let ada = with_clinician(&identity).await;
    let token = identity
        .tokens
        .issue(&provider(), &ada.id, ada.role, &ada.link, now())
        .await
        .unwrap()
        .token;
    assert!(identity.verify_bearer(&token).await.unwrap().is_some());
    // A payload raised to provider_admin keeps the old signature: refused.
    let mut claims = part(&token, 1);
    claims["role"] = "provider_admin".into();
    claims.as_object_mut().unwrap().remove("clinicianId");
    assert!(
        identity
            .verify_bearer(&with_part(&token, 1, &claims))
            .await
            .unwrap()
            .is_none()
    );
    // `alg: none` with no signature.
    let mut header = part(&token, 0);
    header["alg"] = "none".into();
    let unsigned = with_part(&token, 0, &header);
    let unsigned = format!("{}.", unsigned.rsplit_once('.').unwrap().0);
    assert!(identity.verify_bearer(&unsigned).await.unwrap().is_none());
    // Expired (beyond the skew), not yet valid (beyond the skew).
    for issued_at in [now() - 900 - 120, now() + 300] {
        let token = identity
            .tokens
            .issue(&provider(), &ada.id, ada.role, &ada.link, issued_at)
            .await
            .unwrap()
            .token;
        assert!(
            identity.verify_bearer(&token).await.unwrap().is_none(),
            "{issued_at}"
        );
    }
    // Within the skew, a slightly early token still works.
    let early = identity
        .tokens
        .issue(&provider(), &ada.id, ada.role, &ada.link, now() + 20)
        .await
        .unwrap()
        .token;
    assert!(identity.verify_bearer(&early).await.unwrap().is_some());
    // Another table's secret signs tokens this one refuses.
    let (_other_dir, other) = self::table().await;
    let stranger = Identity::new(other, 900, None);
    let forged = stranger
        .tokens
        .issue(
            &provider(),
            &ada.id,
            Role::ProviderAdmin,
            &Link::None,
            now(),
        )
        .await
        .unwrap()
        .token;
    assert!(identity.verify_bearer(&forged).await.unwrap().is_none());
    // The secret is made once and shared: a second verifier of the same table agrees.
    let again = Identity::new(table, 900, None);
    assert!(again.verify_bearer(&token).await.unwrap().is_some());
    // Not a JWT at all.
    assert!(
        identity
            .verify_bearer("ward.PROV001.abc.def")
            .await
            .unwrap()
            .is_none()
    );
    assert!(identity.verify_bearer("a.b.c").await.unwrap().is_none());
}

#[tokio::test]
async fn a_user_item_round_trips_and_changes_need_a_fitting_link() {
    let (_dir, table) = table().await;
    let identity = Identity::new(table, 900, None);
    let ada = with_clinician(&identity).await;
    assert!(matches!(
        identity
            .users
            .create(
                &provider(),
                &ada.id,
                Role::Billing,
                Link::None,
                "x".into(),
                1
            )
            .await,
        Err(UserError::Exists)
    ));
    assert!(matches!(
        identity
            .users
            .create(
                &ProviderId::parse("PROV404").unwrap(),
                &ada.id,
                Role::Billing,
                Link::None,
                "x".into(),
                1
            )
            .await,
        Err(UserError::NotFound)
    ));
    assert!(matches!(
        identity
            .users
            .update(
                &provider(),
                &ada.id,
                UserChange {
                    role: Some((Role::Patient, Link::None)),
                    ..UserChange::default()
                }
            )
            .await,
        Err(UserError::Link(_))
    ));
    let listed = identity.users.list(&provider()).await.unwrap();
    assert_eq!(listed, vec![ada.clone()]);
    assert!(identity.users.delete(&provider(), &ada.id).await.unwrap());
    assert!(!identity.users.delete(&provider(), &ada.id).await.unwrap());
    assert!(identity.users.list(&provider()).await.unwrap().is_empty());
}
