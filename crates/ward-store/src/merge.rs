//! Reading several partitions (index shards, or the item kinds of one patient partition)
//! as one ordered list with one opaque cursor, without a scan.
//!
//! Each [`Stream`] is one partition query whose results come in the merge order, with a
//! `keep` filter (the cursor position, a type or actor filter). [`merge`] takes the first
//! `limit` kept items of every stream, merges them by their merge key and returns the
//! first `limit`: any item among the overall first `limit` is among its own stream's
//! first `limit`, so no item is skipped and none comes twice. The cursor is the merge key
//! of the last item returned.

use crate::{Item, Order, Query, StoreError, Table};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// At most this many pages are read from one stream for one answer (a filter that keeps
/// little ends the page early, with a cursor to go on).
const MAX_PAGES_PER_STREAM: usize = 20;

/// One ordered partition query and which of its items count.
pub struct Stream {
    /// The query (its order must be the merge order).
    pub query: Query,
    /// Whether an item belongs in the answer.
    pub keep: Box<dyn Fn(&Item) -> bool + Send + Sync>,
}

/// The answer: items in order, and where the next page starts.
#[derive(Debug, Default)]
pub struct Merged {
    /// The items.
    pub items: Vec<Item>,
    /// The cursor of the next page, when more may follow.
    pub next: Option<String>,
}

/// Encodes a merge key as an opaque cursor.
pub fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

/// Decodes a cursor back to its merge key.
pub fn decode_cursor(token: &str) -> Result<String, StoreError> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| StoreError::InvalidRequest("cursor is not valid".into()))
}

/// The first `need` kept items of a stream and, when it may hold more, the last item
/// examined (the stream's position).
async fn take(
    table: &dyn Table,
    mut stream: Stream,
    need: usize,
) -> Result<(Vec<Item>, Option<Item>), StoreError> {
    let mut kept = Vec::new();
    let mut last_seen = None;
    for _ in 0..MAX_PAGES_PER_STREAM {
        let page = table.query(stream.query.clone()).await?;
        let count = page.items.len();
        for (i, item) in page.items.into_iter().enumerate() {
            if (stream.keep)(&item) {
                kept.push(item);
                if kept.len() == need {
                    let more = i + 1 < count || page.next.is_some();
                    let position = more.then(|| kept[kept.len() - 1].clone());
                    return Ok((kept, position));
                }
            } else {
                last_seen = Some(item);
            }
        }
        match page.next {
            Some(next) => stream.query.cursor = Some(next),
            None => return Ok((kept, None)),
        }
    }
    // Page budget spent: the stream stands at the later of its last kept or last seen item.
    let position = match (kept.last(), last_seen) {
        (Some(kept_last), _) => Some(kept_last.clone()),
        (None, seen) => seen,
    };
    Ok((kept, position))
}

/// Merges `streams` by `key` (ascending for [`Order::Forward`], descending otherwise).
pub async fn merge(
    table: &dyn Table,
    streams: Vec<Stream>,
    order: Order,
    limit: usize,
    key: impl Fn(&Item) -> String,
) -> Result<Merged, StoreError> {
    let results =
        futures::future::try_join_all(streams.into_iter().map(|stream| take(table, stream, limit)))
            .await?;
    // Items beyond the earliest position of a stream that may hold more are not safe to
    // return yet: that stream's next items could come before them.
    let horizon = results
        .iter()
        .filter_map(|(_, position)| position.as_ref().map(&key))
        .reduce(|a, b| match order {
            Order::Forward => a.min(b),
            Order::Reverse => a.max(b),
        });
    let mut items: Vec<(String, Item)> = results
        .into_iter()
        .flat_map(|(items, _)| items)
        .map(|item| (key(&item), item))
        .collect();
    items.sort_by(|a, b| match order {
        Order::Forward => a.0.cmp(&b.0),
        Order::Reverse => b.0.cmp(&a.0),
    });
    if let Some(horizon) = &horizon {
        items.retain(|(k, _)| match order {
            Order::Forward => k <= horizon,
            Order::Reverse => k >= horizon,
        });
    }
    let more = horizon.is_some() || items.len() > limit;
    items.truncate(limit);
    let next = if more {
        items
            .last()
            .map(|(k, _)| k.clone())
            .or(horizon)
            .map(|k| encode_cursor(&k))
    } else {
        None
    };
    Ok(Merged {
        items: items.into_iter().map(|(_, item)| item).collect(),
        next,
    })
}
