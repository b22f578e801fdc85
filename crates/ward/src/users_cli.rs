//! `ward user create`: a built-in user made offline in a data folder, for the first
//! administrator of an embedded installation (later ones are made through the API).

use std::io::BufRead as _;
use std::path::Path;

use anyhow::Context as _;
use rand::RngCore;
use ward_domain::{Link, ProviderId, Role, UserId, UtcInstant};
use ward_identity::{Users, password};

/// What `ward user create` was asked for.
#[derive(Debug)]
pub struct NewUser<'a> {
    /// The provider (must exist).
    pub provider: &'a str,
    /// The sign-in name.
    pub user: &'a str,
    /// The role's name.
    pub role: &'a str,
    /// A clinician's clinician id.
    pub clinician: Option<&'a str>,
    /// A patient's MRN.
    pub mrn: Option<&'a str>,
    /// Read the password from standard input (one line) instead of generating one.
    pub password_stdin: bool,
}

/// Makes the user; the password when it was generated (to be shown once).
pub async fn create(data_dir: &Path, new: &NewUser<'_>) -> anyhow::Result<Option<String>> {
    let provider = ProviderId::parse(new.provider).map_err(|e| anyhow::anyhow!("provider: {e}"))?;
    let id = UserId::parse(new.user).map_err(|e| anyhow::anyhow!("user id: {e}"))?;
    let role = Role::parse(new.role).with_context(|| {
        let known: Vec<&str> = Role::ALL.iter().map(|role| role.as_str()).collect();
        format!("{:?} is not a role; use {}", new.role, known.join(", "))
    })?;
    let link = Link::from_parts(new.clinician, new.mrn)
        .map_err(|(field, reason)| anyhow::anyhow!("{field}: {reason}"))?;
    role.check_link(&link)
        .map_err(|reason| anyhow::anyhow!("{reason}"))?;
    let (secret, generated) = if new.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        (line.trim_end_matches(['\r', '\n']).to_owned(), false)
    } else {
        let mut bytes = [0u8; 18];
        rand::rng().fill_bytes(&mut bytes);
        (hex::encode(bytes), true)
    };
    let hash = password::hash(&secret)
        .await
        .map_err(|e| anyhow::anyhow!("password: {e}"))?;
    let store = crate::embedded::open(
        data_dir,
        Default::default(),
        &crate::config::Settings::default().embedded_store(),
    )
    .await?;
    Users::new(store.table.clone())
        .create(
            &provider,
            &id,
            role,
            link,
            hash,
            UtcInstant::now().unix_seconds(),
        )
        .await
        .map_err(|e| match e {
            ward_identity::UserError::NotFound => {
                anyhow::anyhow!(
                    "provider {provider} does not exist (ward tenant create {provider})"
                )
            }
            other => anyhow::anyhow!("{other}"),
        })?;
    Ok(generated.then_some(secret))
}
