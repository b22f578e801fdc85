//! `ward migrate --config FILE` on the AWS shape: a DynamoDB table (and its bucket's
//! documents) written before encryption at rest, encrypted in place.
//!
//! In place, because a deployment's table and bucket are named by its stack: every item
//! that holds patient data is written again through the protected table (sealed, its keys
//! rewritten by [`super::rekey`]), an item whose key changes in one transaction with the
//! delete of its old self; a document's bytes are copied to their new path and the old
//! object deleted before its item moves. An item already sealed is done, so after any
//! interruption the command is run again and goes on; when a pass over the table finds
//! nothing left, the table's protection record is written, and from then on it is served.
//! Until then every Ward refuses the table, naming this command.

use std::sync::Arc;

use anyhow::Context as _;
use object_store::{ObjectStore, ObjectStoreExt as _};
use ward_store::{Condition, Item, Key, PK, SK, Table, WriteOp};
use ward_store_dynamodb::DynamoTable;

use super::rekey::{self, EmailClaims, Rekeyed};
use super::{Outcome, Report, Step};
use crate::shape::AwsShape;

/// Items moved in one transaction (two operations each: DynamoDB takes 100).
const MOVES_PER_TRANSACTION: usize = 50;
/// A transaction is written once its items reach this many bytes, about (DynamoDB takes
/// 4 MB in all, and one item up to 400 KB).
const BYTES_PER_TRANSACTION: usize = 2 * 1024 * 1024;
/// Passes over the table before giving up on finding it finished.
const MAX_PASSES: usize = 3;

/// Encrypts the AWS shape's table `aws.table` in place, `page` items a scan step.
pub async fn migrate(
    aws: &AwsShape,
    page: usize,
    progress: &mut dyn FnMut(Step, u64, u64),
) -> anyhow::Result<Outcome> {
    let raw = DynamoTable::new(aws.dynamodb.dynamodb().await, &aws.table);
    if crate::protection::protection_record(&raw).await?.is_some() {
        return Ok(Outcome::AlreadyEncrypted);
    }
    if !crate::protection::written_before(&raw).await? {
        return Ok(Outcome::Empty);
    }
    let (keys, key_store) = crate::shape::aws_keys(aws, true).await?;
    let check = ward_protect::KeyEncryptionKeys::pseudonym(&keys, "", "ward key check");
    let secret = keys.pseudonym_secret();
    let protected =
        crate::protection::protected(Arc::new(raw.clone()), key_store, Arc::new(keys), &secret);
    let s3: Arc<dyn ObjectStore> =
        Arc::new(ward_aws::s3_object_store(&aws.s3).context("cannot configure S3")?);
    let protection = crate::protection::protection();
    let mut report = Report::default();
    for _ in 0..MAX_PASSES {
        // Pass one: the email claims' new names, from the profiles (sealed ones opened),
        // and what is left to do.
        let mut claims = EmailClaims::default();
        let mut left = 0u64;
        let mut after: Option<Key> = None;
        loop {
            let (items, next) = raw.scan(after.as_ref(), page).await?;
            for item in items {
                let sealed = item.contains_key(ward_protect::SEALED_ATTRIBUTE);
                if item.get(SK).and_then(ward_store::Value::as_s) == Some("PROFILE") {
                    if sealed {
                        if let Some(opened) = protected.table.get(&Key::of(&item)?).await? {
                            claims.note(&opened, &protected.pseudonyms);
                        }
                    } else {
                        claims.note(&item, &protected.pseudonyms);
                    }
                }
                if !sealed && to_do(&item, &protection, &protected.pseudonyms, &claims) {
                    left += 1;
                }
            }
            progress(Step::Reading, left, left);
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        if left == 0 {
            crate::protection::write_record(&raw, &check).await?;
            return Ok(Outcome::Encrypted(Some(report)));
        }
        report.items = report.items.max(left);
        // Pass two: every item left, moved or sealed where it is.
        let mut done = 0u64;
        let mut after: Option<Key> = None;
        loop {
            let (items, next) = raw.scan(after.as_ref(), page).await?;
            let mut batch = Moves::default();
            for item in items {
                if item.contains_key(ward_protect::SEALED_ATTRIBUTE)
                    || !to_do(&item, &protection, &protected.pseudonyms, &claims)
                {
                    continue;
                }
                let old = Key::of(&item)?;
                match rekey::rekey(item, &protected.pseudonyms, &claims)? {
                    Rekeyed::OrphanClaim => {
                        report.orphan_claims += 1;
                        raw.delete(&old, Condition::None).await?;
                    }
                    Rekeyed::Item(new) => {
                        if Key::of(&new)?.sk.starts_with("DOC#") {
                            move_document(&*s3, &old, &protected.pseudonyms).await?;
                            report.objects += 1;
                        }
                        if let Some(full) = batch.push(new, old) {
                            protected.table.transact_write(full).await?;
                            progress(Step::Items, done, left);
                        }
                    }
                }
                done += 1;
            }
            let rest = batch.take();
            if !rest.is_empty() {
                protected.table.transact_write(rest).await?;
            }
            progress(Step::Items, done, left);
            match next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    anyhow::bail!(
        "the table {} still holds items of the earlier layout after {MAX_PASSES} passes: is a \
         Ward of the earlier version still writing to it? Stop it and run ward migrate again",
        aws.table
    )
}

/// The writes of moved items, gathered into transactions DynamoDB takes: at most 100
/// operations, and about [`BYTES_PER_TRANSACTION`] of items (it takes 4 MB in all).
#[derive(Default)]
struct Moves {
    ops: Vec<WriteOp>,
    bytes: usize,
}

impl Moves {
    /// Adds the put of `new` (and the delete of `old`, when it moved); gives back the
    /// operations to write now when that filled a transaction.
    fn push(&mut self, new: Item, old: Key) -> Option<Vec<WriteOp>> {
        let moved = Key::of(&new).map_or(true, |key| key != old);
        let needs = if moved { 2 } else { 1 };
        let mut full = None;
        if self.ops.len() + needs > MOVES_PER_TRANSACTION * 2 {
            full = Some(self.take());
        }
        self.bytes += approximate_size(&new);
        self.ops.push(WriteOp::Put {
            item: new,
            condition: Condition::None,
        });
        if moved {
            self.ops.push(WriteOp::Delete {
                key: old,
                condition: Condition::None,
            });
        }
        if full.is_none() && self.bytes >= BYTES_PER_TRANSACTION {
            full = Some(self.take());
        }
        full
    }

    /// What is gathered, and none left.
    fn take(&mut self) -> Vec<WriteOp> {
        self.bytes = 0;
        std::mem::take(&mut self.ops)
    }
}

/// About how many bytes `item` takes (its names and values; sealing adds a few dozen).
fn approximate_size(item: &Item) -> usize {
    fn size(value: &ward_store::Value) -> usize {
        use ward_store::Value;
        match value {
            Value::S(text) | Value::N(text) => text.len(),
            Value::B(bytes) => bytes.len(),
            Value::L(values) => values.iter().map(size).sum::<usize>() + 3,
            Value::M(map) => {
                map.iter()
                    .map(|(name, v)| name.len() + size(v))
                    .sum::<usize>()
                    + 3
            }
            Value::Bool(_) | Value::Null => 1,
        }
    }
    item.iter()
        .map(|(name, v)| name.len() + size(v))
        .sum::<usize>()
        + 64
}

/// Whether `item` (not sealed) is still to be moved or sealed: it holds protected data,
/// or a key of the earlier layout.
fn to_do(
    item: &Item,
    protection: &ward_protect::Protection,
    pseudonyms: &ward_domain::Pseudonyms,
    claims: &EmailClaims,
) -> bool {
    let Ok(key) = Key::of(item) else {
        return false;
    };
    if key.sk == ward_protect::DATA_KEY_SK {
        return false;
    }
    if item
        .iter()
        .any(|(name, value)| !matches!(value, ward_store::Value::Null) && protection.protects(name))
    {
        return true;
    }
    match rekey::rekey(item.clone(), pseudonyms, claims) {
        Ok(Rekeyed::Item(new)) => {
            new.get(PK) != item.get(PK)
                || ["GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK"]
                    .iter()
                    .any(|name| new.get(*name) != item.get(*name))
        }
        Ok(Rekeyed::OrphanClaim) | Err(_) => true,
    }
}

/// Copies the bytes of the document whose item moves from `old` to the path its
/// patient's pseudonym names, then deletes the old object (neither, if an interrupted run
/// did it already).
async fn move_document(
    s3: &dyn ObjectStore,
    old: &Key,
    pseudonyms: &ward_domain::Pseudonyms,
) -> anyhow::Result<()> {
    let document = old.sk.trim_start_matches("DOC#");
    let (provider, mrn) = old
        .pk
        .strip_prefix("PROV#")
        .and_then(|rest| rest.split_once("#PAT#"))
        .context("a document outside a patient's partition")?;
    let from = format!(
        "{provider}/{}/{mrn}/{document}",
        ward_domain::key_layout::DOCUMENTS_FOLDER
    );
    let to = rekey::object_path(&from, pseudonyms)?;
    let from = object_store::path::Path::parse(&from).context("a document's old path")?;
    let to = object_store::path::Path::parse(&to).context("a document's new path")?;
    match s3.head(&from).await {
        Ok(_) => {
            s3.copy(&from, &to).await?;
            s3.delete(&from).await?;
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visit(pk: &str, sk: &str, notes: usize) -> Item {
        let mut item = Item::new();
        item.insert(PK.into(), ward_store::Value::s(pk));
        item.insert(SK.into(), ward_store::Value::s(sk));
        item.insert(
            "doctorsNotes".into(),
            ward_store::Value::s("x".repeat(notes)),
        );
        item
    }

    #[test]
    fn moves_fill_transactions_of_at_most_100_operations_and_about_2_mib() {
        // Small items that move: 50 to a transaction (a put and a delete each).
        let mut moves = Moves::default();
        let mut written = Vec::new();
        for n in 0..120 {
            let old = Key::new(format!("OLD#{n}"), "S");
            if let Some(full) = moves.push(visit(&format!("NEW#{n}"), "S", 10), old) {
                written.push(full.len());
            }
        }
        written.push(moves.take().len());
        assert_eq!(written, [100, 100, 40]);
        // Large items sealed where they are: cut by their size, never past DynamoDB's 4 MB.
        let mut moves = Moves::default();
        let mut sizes = Vec::new();
        for n in 0..30 {
            let key = Key::new("P", format!("S{n}"));
            if let Some(full) = moves.push(visit("P", &format!("S{n}"), 300_000), key) {
                sizes.push(full.len());
            }
        }
        assert_eq!(sizes, [7, 7, 7, 7]);
        assert_eq!(moves.take().len(), 2);
        assert!(moves.take().is_empty());
    }
}
