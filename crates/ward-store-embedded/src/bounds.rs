//! Sort-key conditions as byte ranges of the ordered encoding (`pk 0x00 sk`).

use std::ops::Bound;

use ward_store::SkCondition;

/// The key range of a partition's entries whose sort key may meet `condition`. Works for
/// item keys (`pk 0 sk`) and index keys (`pk 0 sk 0 ...`) alike, because key parts hold no
/// NUL: every key with sort key `v` lies in `[P v, P v 0x01)`.
pub(crate) fn sort_key_bounds(
    pk: &str,
    condition: &SkCondition,
) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let partition = {
        let mut prefix = pk.as_bytes().to_vec();
        prefix.push(0);
        prefix
    };
    let at = |value: &str| {
        let mut bytes = partition.clone();
        bytes.extend_from_slice(value.as_bytes());
        bytes
    };
    let just_after = |value: &str| {
        let mut bytes = at(value);
        bytes.push(1);
        bytes
    };
    let partition_end = {
        let mut bytes = pk.as_bytes().to_vec();
        bytes.push(1);
        bytes
    };
    let lower = match condition {
        SkCondition::Eq(v) | SkCondition::Ge(v) | SkCondition::BeginsWith(v) => {
            Bound::Included(at(v))
        }
        SkCondition::Between(low, _) => Bound::Included(at(low)),
        SkCondition::Gt(v) => Bound::Included(just_after(v)),
        SkCondition::Any | SkCondition::Lt(_) | SkCondition::Le(_) => Bound::Included(at("")),
    };
    let upper = match condition {
        SkCondition::Eq(v) | SkCondition::Le(v) => Bound::Excluded(just_after(v)),
        SkCondition::Between(_, high) => Bound::Excluded(just_after(high)),
        SkCondition::Lt(v) => Bound::Excluded(at(v)),
        SkCondition::BeginsWith(prefix) => match prefix_successor(prefix.as_bytes()) {
            Some(successor) => {
                let mut bytes = at("");
                bytes.extend_from_slice(&successor);
                Bound::Excluded(bytes)
            }
            None => Bound::Excluded(partition_end),
        },
        SkCondition::Any | SkCondition::Gt(_) | SkCondition::Ge(_) => {
            Bound::Excluded(partition_end)
        }
    };
    (lower, upper)
}

pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut successor = prefix.to_vec();
    while let Some(last) = successor.pop() {
        if last < u8::MAX {
            successor.push(last + 1);
            return Some(successor);
        }
    }
    None
}

pub(crate) fn max_lower(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    match (&a, &b) {
        (Bound::Unbounded, _) => b,
        (_, Bound::Unbounded) => a,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            if x > y || (x == y && matches!(a, Bound::Excluded(_))) {
                a
            } else {
                b
            }
        }
    }
}

pub(crate) fn min_upper(a: Bound<Vec<u8>>, b: Bound<Vec<u8>>) -> Bound<Vec<u8>> {
    match (&a, &b) {
        (Bound::Unbounded, _) => b,
        (_, Bound::Unbounded) => a,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
            if x < y || (x == y && matches!(a, Bound::Excluded(_))) {
                a
            } else {
                b
            }
        }
    }
}

pub(crate) fn bounds_empty(lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    match (lower, upper) {
        (Bound::Included(x), Bound::Included(y)) => x > y,
        (Bound::Included(x) | Bound::Excluded(x), Bound::Excluded(y))
        | (Bound::Excluded(x), Bound::Included(y)) => x >= y,
        _ => false,
    }
}

pub(crate) fn as_slice_bound(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(bytes) => Bound::Included(bytes.as_slice()),
        Bound::Excluded(bytes) => Bound::Excluded(bytes.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}
