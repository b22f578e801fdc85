//! `ward migrate`: encrypts in place a data folder that a Ward before encryption at rest
//! wrote (docs/encryption.md#migrating). Offline,
//! resumable and crash-safe: run it again after any interruption and it goes on.
//!
//! How: every item of the old store is read as stored, its keys rewritten to today's layout
//! ([`rekey`]: pseudonyms for MRNs, blind indexes for emails) and written through the
//! protected table into a new store in a staging folder (`{data}/.encrypting`); every object
//! is copied through the sealed object store beside it, a document under its new path. The
//! staging store records how many of the old store's items it holds (in key order, written
//! with `put if absent`, so a page written again after a crash changes nothing). Once all
//! is copied, a `COMPLETE` file is synced and the staging store and objects are renamed
//! into place, each rename repeatable; the old plaintext files are then deleted. Until
//! the end, the old folder is untouched and the server refuses both it and an unfinished
//! staging folder, naming this command.
//!
//! Owns: the order and recovery of the migration. Deliberately does not: know any schema
//! beyond the old keys ([`rekey`]); what is sealed is the protected table's business.

#[cfg(feature = "aws")]
pub mod aws;
pub mod rekey;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use futures::TryStreamExt as _;
use object_store::{ObjectStore, ObjectStoreExt as _};
use ward_store::{Condition, Item, Key, PK, SK, Value};
use ward_store_embedded::EmbeddedTable;

use crate::durable_objects::DurableLocalFileSystem;
use crate::embedded::EmbeddedStore;

/// The staging folder inside the data folder.
pub use crate::embedded::MIGRATION_STAGING_DIR as STAGING_DIR;
const COMPLETE_FILE: &str = "COMPLETE";
const STORE_FILE: &str = "ward.redb";
const OBJECTS_DIR: &str = "objects";
/// The staging store's record of how far the copy got.
const PROGRESS_PK: &str = "PLATFORM#MIGRATION";
const PROGRESS_SK: &str = "ENCRYPTION";
const COPIED: &str = "itemsCopied";
/// The environment variable that makes `ward migrate` stop dead at a named point (tests of
/// its recovery only): `swap` after the old store was moved aside and before the new one
/// is in place.
pub const CRASH_AT_VARIABLE: &str = "WARD_TEST_CRASH_AT";

/// `ward migrate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data folder to encrypt (stop the server that serves it first).
    #[arg(long, env = "WARD_DATA_DIR", default_value = "ward-data")]
    pub data_dir: PathBuf,
    /// A TOML settings file (its `[keys] dir` and store tuning).
    #[arg(long, env = "WARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Items copied per step (each step is recorded; a smaller one loses less to a crash).
    #[arg(long, default_value_t = 500, hide = true)]
    pub page_items: usize,
}

/// Where the migration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Reading the old store through once (for the email claims' new names).
    Reading,
    /// Copying its items, sealed.
    Items,
    /// Copying its objects, sealed.
    Objects,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Items of the old store.
    pub items: u64,
    /// Of those, copied by an earlier, interrupted run.
    pub resumed_after: u64,
    /// Objects of the old folder.
    pub objects: u64,
    /// Email claims that no profile held the address of, left behind.
    pub orphan_claims: u64,
    /// The names of the data folder's entries that are not Ward's, left as they were.
    pub not_wards: Vec<String>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The folder is encrypted now (`None`: an earlier run had copied everything; this one
    /// only finished putting it in place).
    Encrypted(Option<Report>),
    /// It was already encrypted: nothing to do.
    AlreadyEncrypted,
    /// It holds nothing yet (a new folder starts encrypted).
    Empty,
}

/// Runs `ward migrate`, printing its progress on standard error.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut settings = crate::config::Settings::load(args.config.as_deref())?;
    settings.apply_lambda_environment();
    let shape = crate::shape::Shape::from_settings(&settings)?;
    // Each step's first progress, then one a second, and its last.
    let mut last: Option<(Step, std::time::Instant)> = None;
    let mut progress = |step: Step, done: u64, total: u64| {
        let due = match last {
            Some((was, at)) => was != step || at.elapsed().as_secs() >= 1,
            None => true,
        };
        if due || (step != Step::Reading && done == total) {
            last = Some((step, std::time::Instant::now()));
            match step {
                Step::Reading => eprintln!("reading the old store: {done} items"),
                Step::Items => eprintln!("items encrypted: {done} of {total}"),
                Step::Objects => eprintln!("objects encrypted: {done} of {total}"),
            }
        }
    };
    let outcome = match &shape {
        crate::shape::Shape::Embedded => {
            migrate(
                &args.data_dir,
                &settings.embedded_store(),
                args.page_items,
                &mut progress,
            )
            .await?
        }
        #[cfg(feature = "aws")]
        crate::shape::Shape::Aws(aws) => aws::migrate(aws, args.page_items, &mut progress).await?,
    };
    let folder = match &shape {
        crate::shape::Shape::Embedded => args.data_dir.display().to_string(),
        #[cfg(feature = "aws")]
        crate::shape::Shape::Aws(aws) => format!("the DynamoDB table {}", aws.table),
    };
    match outcome {
        Outcome::Encrypted(Some(report)) => {
            if matches!(shape, crate::shape::Shape::Embedded) {
                println!(
                    "encrypted {folder}: {} items and {} objects, sealed; the plaintext files are deleted",
                    report.items, report.objects
                );
            } else {
                println!(
                    "encrypted {folder}: {} items sealed in place, {} documents moved to their patients' pseudonyms",
                    report.items, report.objects
                );
            }
            if report.resumed_after > 0 {
                println!(
                    "(went on after an interrupted run, which had copied {} items)",
                    report.resumed_after
                );
            }
            if !report.not_wards.is_empty() {
                println!(
                    "left as they were, not being Ward's (delete any that holds patient data): {}",
                    report.not_wards.join(", ")
                );
            }
            if report.orphan_claims > 0 {
                println!(
                    "{} email claims no patient or clinician held the address of were left behind",
                    report.orphan_claims
                );
            }
        }
        Outcome::Encrypted(None) => {
            println!("encrypted {folder}: finished putting the encrypted store in place")
        }
        Outcome::AlreadyEncrypted => println!("{folder} is encrypted at rest already"),
        Outcome::Empty => {
            println!("{folder} holds nothing yet: `ward serve` starts it encrypted")
        }
    }
    Ok(())
}

/// Encrypts the data folder `data_dir` in place, with the key folder `store` names (made
/// if missing), `page` items a step, calling `progress(step, done, total)` as it goes.
pub async fn migrate(
    data_dir: &Path,
    store: &EmbeddedStore,
    page: usize,
    progress: &mut dyn FnMut(Step, u64, u64),
) -> anyhow::Result<Outcome> {
    let staging = data_dir.join(STAGING_DIR);
    if staging.join(COMPLETE_FILE).exists() {
        swap(data_dir)?;
        return Ok(Outcome::Encrypted(None));
    }
    let store_path = data_dir.join(STORE_FILE);
    if !store_path.exists() {
        anyhow::bail!(
            "{} holds no store ({STORE_FILE}); is --data-dir the folder Ward wrote?",
            data_dir.display()
        );
    }
    let source = open(&store_path, store, data_dir)?;
    if crate::protection::protection_record(&source)
        .await?
        .is_some()
    {
        if staging.exists() {
            std::fs::remove_dir_all(&staging)
                .with_context(|| format!("cannot remove {}", staging.display()))?;
        }
        return Ok(Outcome::AlreadyEncrypted);
    }
    if !crate::protection::written_before(&source).await? {
        return Ok(Outcome::Empty);
    }
    let report = copy(data_dir, &staging, &source, store, page, progress).await?;
    drop(source);
    let complete = staging.join(COMPLETE_FILE);
    std::fs::write(&complete, b"every item and object is copied, sealed\n")
        .and_then(|()| std::fs::File::open(&complete)?.sync_all())
        .and_then(|()| sync_dir(&staging))
        .with_context(|| format!("cannot write {}", complete.display()))?;
    swap(data_dir)?;
    let mut report = report;
    report.not_wards = not_wards(data_dir)?;
    Ok(Outcome::Encrypted(Some(report)))
}

/// The entries of `data_dir` that Ward did not make (the demo's CSV file, anything put
/// there by hand).
fn not_wards(data_dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(data_dir)
        .with_context(|| format!("cannot list {}", data_dir.display()))?
    {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if ![STORE_FILE, OBJECTS_DIR, "tmp"].contains(&name.as_str()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn open(path: &Path, store: &EmbeddedStore, data_dir: &Path) -> anyhow::Result<EmbeddedTable> {
    crate::embedded::open_folder_table(data_dir, path, &store.options)
}

/// Copies every item and object of the old folder into `staging`, sealed.
async fn copy(
    data_dir: &Path,
    staging: &Path,
    source: &EmbeddedTable,
    store: &EmbeddedStore,
    page: usize,
    progress: &mut dyn FnMut(Step, u64, u64),
) -> anyhow::Result<Report> {
    std::fs::create_dir_all(staging.join(OBJECTS_DIR))
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let keys_dir = store
        .keys_dir
        .clone()
        .unwrap_or_else(|| crate::protection::default_keys_dir(data_dir));
    let staged = open(&staging.join(STORE_FILE), store, data_dir)?;
    let protected = crate::protection::protect(staging, Arc::new(staged), &keys_dir).await?;
    let table = &protected.table;
    let pseudonyms = &protected.pseudonyms;

    // Pass one: count the items, and learn each email claim's new name from the profiles.
    let mut claims = rekey::EmailClaims::default();
    let mut total = 0u64;
    let mut after: Option<Key> = None;
    loop {
        let (items, next) = source.scan(after.as_ref(), page)?;
        for item in &items {
            claims.note(item, pseudonyms);
        }
        total += items.len() as u64;
        progress(Step::Reading, total, total);
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }

    // Pass two: the items, a page at a time, each page's count recorded after it.
    let progress_key = Key::new(PROGRESS_PK, PROGRESS_SK);
    let resumed_after = match table.get(&progress_key).await? {
        Some(record) => record.get(COPIED).and_then(Value::as_i64).unwrap_or(0) as u64,
        None => 0,
    };
    let mut report = Report {
        items: total,
        resumed_after,
        ..Report::default()
    };
    let mut seen = 0u64;
    let mut after: Option<Key> = None;
    loop {
        let (items, next) = source.scan(after.as_ref(), page)?;
        let mut batch = Vec::with_capacity(items.len());
        for item in items {
            seen += 1;
            if seen <= resumed_after {
                continue;
            }
            match rekey::rekey(item, pseudonyms, &claims)? {
                rekey::Rekeyed::Item(item) => batch.push(item),
                rekey::Rekeyed::OrphanClaim => report.orphan_claims += 1,
            }
        }
        if seen > resumed_after {
            if !batch.is_empty() {
                table.put_many_if_absent(batch).await?;
            }
            let mut record = Item::new();
            record.insert(PK.into(), Value::s(PROGRESS_PK));
            record.insert(SK.into(), Value::s(PROGRESS_SK));
            record.insert(COPIED.into(), Value::n(seen as i64));
            table.put(record, Condition::None).await?;
            progress(Step::Items, seen, total);
        }
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }

    // Then the objects; one already copied (by an interrupted run) is there whole, or not
    // at all (each is written beside its place and renamed into it).
    let old_objects = data_dir.join(OBJECTS_DIR);
    if old_objects.exists() {
        let from =
            DurableLocalFileSystem::new(&old_objects).context("cannot open the objects folder")?;
        let into: Arc<dyn ObjectStore> = Arc::new(
            DurableLocalFileSystem::new(staging.join(OBJECTS_DIR))
                .context("cannot open the staging objects folder")?,
        );
        let into = ward_protect::SealedObjects::new(into, Arc::clone(&protected.keys));
        let listed: Vec<object_store::ObjectMeta> = from.list(None).try_collect().await?;
        report.objects = listed.len() as u64;
        for (done, meta) in listed.iter().enumerate() {
            let path = rekey::object_path(meta.location.as_ref(), pseudonyms)?;
            let path = object_store::path::Path::parse(&path)
                .context("a document's new path is not a valid path")?;
            if into.head(&path).await.is_err() {
                copy_object(&from, &meta.location, &into, &path).await?;
            }
            progress(Step::Objects, done as u64 + 1, report.objects);
        }
    }
    Ok(report)
}

/// Streams one object from `from` into `into` (which seals it on the way).
async fn copy_object(
    from: &dyn ObjectStore,
    location: &object_store::path::Path,
    into: &dyn ObjectStore,
    path: &object_store::path::Path,
) -> anyhow::Result<()> {
    let mut stream = from.get(location).await?.into_stream();
    let mut writer = object_store::WriteMultipart::new(into.put_multipart(path).await?);
    while let Some(chunk) = stream.try_next().await? {
        writer.write(&chunk);
    }
    writer.finish().await?;
    Ok(())
}

/// Puts the staging store and objects in place of the old ones, then deletes the old
/// (plaintext) ones, the old version's sort spill files and the staging folder. Each step
/// is repeatable: after a crash anywhere in it, running it again finishes it.
fn swap(data_dir: &Path) -> anyhow::Result<()> {
    let staging = data_dir.join(STAGING_DIR);
    for name in [STORE_FILE, OBJECTS_DIR] {
        let staged = staging.join(name);
        if !staged.exists() {
            continue;
        }
        let live = data_dir.join(name);
        let aside = staging.join(format!("plaintext-{name}"));
        if live.exists() {
            if aside.exists() {
                anyhow::bail!(
                    "{} and {} both exist: something wrote the data folder while its encryption \
                     was unfinished; keep {} and remove {} by hand, then run ward migrate again",
                    live.display(),
                    aside.display(),
                    aside.display(),
                    live.display()
                );
            }
            rename(&live, &aside)?;
            if name == STORE_FILE && std::env::var(CRASH_AT_VARIABLE).as_deref() == Ok("swap") {
                std::process::abort();
            }
        }
        rename(&staged, &live)?;
    }
    let spill = data_dir.join("tmp");
    if spill.exists() {
        std::fs::remove_dir_all(&spill)
            .with_context(|| format!("cannot remove {}", spill.display()))?;
    }
    std::fs::remove_dir_all(&staging)
        .with_context(|| format!("cannot remove {}", staging.display()))?;
    sync_dir(data_dir).with_context(|| format!("cannot sync {}", data_dir.display()))?;
    Ok(())
}

fn rename(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::rename(from, to)
        .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
    for dir in [from.parent(), to.parent()].into_iter().flatten() {
        sync_dir(dir).with_context(|| format!("cannot sync {}", dir.display()))?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}
