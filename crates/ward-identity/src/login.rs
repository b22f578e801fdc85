//! A built-in user's login: password check, throttling, a short-lived token.
//!
//! Failed logins are throttled two ways:
//! - **per account**, in the user item (so every server and function sees the same count):
//!   after [`FREE_FAILURES`] failures in a row, each further attempt must wait
//!   2^(failures - FREE_FAILURES) seconds after the last failure, at most
//!   [`MAX_ACCOUNT_WAIT_SECONDS`], measured in milliseconds (a wait never ends early at
//!   a second's boundary); a throttled attempt is answered without checking the
//!   password, and a success resets the count. An attacker can slow a user's logins down
//!   this way but never lock the account for good.
//! - **per client address**, in this process: at most [`ADDRESS_FAILURES`] failures in
//!   [`ADDRESS_WINDOW_SECONDS`], across accounts (one address guessing many users).
//!
//! An unknown user, a disabled user and a wrong password get the same answer and take
//! the same time (the unknown one is checked against a decoy hash).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use ward_domain::{ProviderId, UserId};
use ward_store::StoreError;

use crate::password;
use crate::tokens::{IssuedToken, WardTokens};
use crate::users::{User, Users};

/// Failures in a row an account may have before its logins are slowed down.
pub const FREE_FAILURES: i64 = 5;
/// The longest an account's next login must wait.
pub const MAX_ACCOUNT_WAIT_SECONDS: i64 = 15 * 60;
/// Failures one address may have in a window.
pub const ADDRESS_FAILURES: u32 = 20;
/// The address window.
pub const ADDRESS_WINDOW_SECONDS: i64 = 15 * 60;
/// Addresses remembered at once (a bound on the throttle's memory).
const MAX_ADDRESSES: usize = 10_000;

/// Why a login did not give a token.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown user, disabled user or wrong password (never which, to the caller).
    #[error("the user name or password is wrong")]
    Invalid,
    /// A known user's wrong password: answered as [`LoginError::Invalid`], but the
    /// audit trail records it against the user.
    #[error("the user name or password is wrong")]
    WrongPassword(Box<User>),
    /// Too many failures: try again after this many seconds.
    #[error("too many failed logins; retry after {0} s")]
    Throttled(i64),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How many milliseconds an account with `failures` in a row, the last at `last_millis`,
/// must wait at `now_millis` (all Unix milliseconds).
pub fn account_wait_millis(failures: i64, last_millis: Option<i64>, now_millis: i64) -> i64 {
    if failures < FREE_FAILURES {
        return 0;
    }
    let exponent = (failures - FREE_FAILURES).clamp(0, 20) as u32;
    let wait = 2_i64.pow(exponent).min(MAX_ACCOUNT_WAIT_SECONDS) * 1000;
    (last_millis.unwrap_or(now_millis) + wait - now_millis).max(0)
}

/// Whole seconds that cover `millis` (what a Retry-After says).
fn seconds_covering(millis: i64) -> i64 {
    (millis + 999).div_euclid(1000)
}

/// The per-address failure counts of this process.
#[derive(Debug, Default)]
pub struct AddressThrottle {
    failures: Mutex<HashMap<IpAddr, (u32, i64)>>,
}

impl AddressThrottle {
    /// Seconds `address` must wait at `now` (0: it may try).
    pub fn wait(&self, address: IpAddr, now: i64) -> i64 {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match failures.get(&address) {
            Some((count, since))
                if *count >= ADDRESS_FAILURES && now < since + ADDRESS_WINDOW_SECONDS =>
            {
                since + ADDRESS_WINDOW_SECONDS - now
            }
            _ => 0,
        }
    }

    /// Counts a failure of `address` at `now`.
    pub fn fail(&self, address: IpAddr, now: i64) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_ADDRESSES && !failures.contains_key(&address) {
            failures.retain(|_, (_, since)| now < *since + ADDRESS_WINDOW_SECONDS);
            if failures.len() >= MAX_ADDRESSES {
                // Still full of live windows: forget them rather than grow without bound.
                failures.clear();
            }
        }
        let entry = failures.entry(address).or_insert((0, now));
        if now >= entry.1 + ADDRESS_WINDOW_SECONDS {
            *entry = (0, now);
        }
        entry.0 += 1;
    }
}

/// Logs built-in users in.
#[derive(Debug, Clone)]
pub struct Logins {
    users: Users,
    tokens: WardTokens,
    addresses: std::sync::Arc<AddressThrottle>,
}

impl Logins {
    /// Logins of `users`, issuing `tokens`.
    pub fn new(users: Users, tokens: WardTokens) -> Self {
        Self {
            users,
            tokens,
            addresses: std::sync::Arc::default(),
        }
    }

    /// A token for `user` of `provider` if `password` is right and neither the account
    /// nor the address is throttled, at `now_millis` (Unix milliseconds).
    pub async fn login(
        &self,
        provider: &str,
        user: &str,
        password: &str,
        address: Option<IpAddr>,
        now_millis: i64,
    ) -> Result<(IssuedToken, User), LoginError> {
        let now = now_millis.div_euclid(1000);
        if let Some(address) = address {
            let wait = self.addresses.wait(address, now);
            if wait > 0 {
                return Err(LoginError::Throttled(wait));
            }
        }
        let found = match (ProviderId::parse(provider), UserId::parse(user)) {
            (Ok(provider), Ok(id)) => self.users.get(&provider, &id).await?,
            _ => None,
        };
        let Some(found) = found.filter(|user| !user.disabled) else {
            password::verify(None, password).await;
            self.fail_address(address, now);
            return Err(LoginError::Invalid);
        };
        let wait = account_wait_millis(
            found.failed_logins,
            found.last_failed_login_millis,
            now_millis,
        );
        if wait > 0 {
            return Err(LoginError::Throttled(seconds_covering(wait)));
        }
        if !password::verify(Some(found.password_hash()), password).await {
            self.fail_address(address, now);
            self.users.record_failure(found.clone(), now_millis).await?;
            return Err(LoginError::WrongPassword(Box::new(found)));
        }
        let token = self
            .tokens
            .issue(&found.provider, &found.id, found.role, &found.link, now)
            .await?;
        self.users.record_success(found.clone()).await?;
        Ok((token, found))
    }

    fn fail_address(&self, address: Option<IpAddr>, now: i64) {
        if let Some(address) = address {
            self.addresses.fail(address, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_waits_longer_after_each_failure_past_the_free_ones_up_to_a_bound() {
        assert_eq!(account_wait_millis(4, Some(100_000), 100_000), 0);
        assert_eq!(account_wait_millis(5, Some(100_000), 100_000), 1000);
        assert_eq!(account_wait_millis(6, Some(100_000), 100_000), 2000);
        assert_eq!(account_wait_millis(8, Some(100_000), 103_000), 5000);
        assert_eq!(account_wait_millis(8, Some(100_000), 108_000), 0);
        assert_eq!(
            account_wait_millis(60, Some(100_000), 100_000),
            MAX_ACCOUNT_WAIT_SECONDS * 1000
        );
    }

    #[test]
    fn a_wait_is_a_whole_second_even_across_a_seconds_boundary() {
        // The fifth failure late in one second, the next attempt early in the next: the
        // account still waits most of its second, and the answer rounds up.
        assert_eq!(account_wait_millis(5, Some(100_990), 101_010), 980);
        assert_eq!(seconds_covering(980), 1);
        assert_eq!(seconds_covering(1000), 1);
        assert_eq!(seconds_covering(1001), 2);
    }

    #[test]
    fn an_address_is_throttled_after_its_failures_until_the_window_ends() {
        let throttle = AddressThrottle::default();
        let address: IpAddr = "127.0.0.7".parse().unwrap();
        for _ in 0..ADDRESS_FAILURES - 1 {
            throttle.fail(address, 1000);
        }
        assert_eq!(throttle.wait(address, 1000), 0);
        throttle.fail(address, 1000);
        assert_eq!(throttle.wait(address, 1001), ADDRESS_WINDOW_SECONDS - 1);
        assert_eq!(throttle.wait("127.0.0.8".parse().unwrap(), 1001), 0);
        assert_eq!(throttle.wait(address, 1000 + ADDRESS_WINDOW_SECONDS), 0);
        // The map stays bounded however many addresses fail.
        for i in 0..(MAX_ADDRESSES as u32 + 10) {
            throttle.fail(IpAddr::from(i.to_be_bytes()), 5000);
        }
        assert!(throttle.failures.lock().unwrap().len() <= MAX_ADDRESSES);
    }
}
