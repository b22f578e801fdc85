//! Reads across a patient's, a clinician's or a clinic's items: one partition, or index
//! shards merged into one ordered list with one cursor (`ward_store::merge`).

use ward_domain::key_layout::{
    self as keys, CLINICIAN_INDEX, EMR_INDEX_SHARDS, LIST_INDEX, TYPE_INDEX,
};
use ward_store::merge::{self, Merged, Stream};
use ward_store::{Item, Key, Order, PK, Query, SK, SkCondition};

use super::{
    Emr, EmrError, ListFilter, Listed, child_prefix, compact, invalid, parse_clinic,
    parse_clinician, parse_mrn, s, stored,
};
use crate::audit::Actor;
use crate::model::{self, Kind};

impl Emr {
    /// A patient's items of one kind in time order, with time, type and status filters.
    pub async fn list_children(
        &self,
        actor: &Actor,
        kind: Kind,
        mrn: &str,
        filter: ListFilter,
    ) -> Result<Listed, EmrError> {
        let actor = &self.admitted(actor, "LIST", kind, None, mrn).await?;
        let result = async {
            let mrn_id = parse_mrn(mrn)?;
            let prefix = child_prefix(kind);
            let (low, high) = time_range(prefix, &filter)?;
            let after = filter
                .cursor
                .as_deref()
                .map(merge::decode_cursor)
                .transpose()?;
            let keep = attribute_filter(&filter);
            let stream = range_stream(
                None,
                super::patient_pk(&self.pseudonyms, &actor.provider, &mrn_id),
                SK,
                low,
                high,
                filter.order,
                filter.limit,
                after,
                keep,
            );
            self.merged(vec![stream], filter.order, filter.limit, SK)
                .await
        }
        .await;
        self.audited(actor, "LIST", kind, None, Some(mrn), result)
            .await
    }

    /// A clinician's appointments or clinical records in time order (`GSI1`).
    pub async fn clinician_items(
        &self,
        actor: &Actor,
        kind: Kind,
        clinician: &str,
        filter: ListFilter,
    ) -> Result<Listed, EmrError> {
        let result = async {
            let clinician_id = own_partition(actor, clinician)?;
            let prefix = child_prefix(kind);
            let (low, high) = time_range(prefix, &filter)?;
            let after = filter
                .cursor
                .as_deref()
                .map(merge::decode_cursor)
                .transpose()?;
            let stream = range_stream(
                Some(CLINICIAN_INDEX.name),
                keys::clinician_pk(&actor.provider, &clinician_id),
                CLINICIAN_INDEX.sk,
                low,
                high,
                filter.order,
                filter.limit,
                after,
                attribute_filter(&filter),
            );
            self.merged(vec![stream], filter.order, filter.limit, CLINICIAN_INDEX.sk)
                .await
        }
        .await;
        self.audited(actor, "LIST", kind, Some(clinician), None, result)
            .await
    }

    /// The patients a clinician cares for, by MRN: its care relations (`GSI1` of its own
    /// partition) and one batch read of those patients. A clinician lists its own only.
    pub async fn clinician_patients(
        &self,
        actor: &Actor,
        clinician: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Listed, EmrError> {
        let result = async {
            let clinician_id = own_partition(actor, clinician)?;
            let after = cursor.map(merge::decode_cursor).transpose()?;
            let prefix = keys::CARE_INDEX_SK_PREFIX;
            let stream = range_stream(
                Some(CLINICIAN_INDEX.name),
                keys::clinician_pk(&actor.provider, &clinician_id),
                CLINICIAN_INDEX.sk,
                prefix.to_owned(),
                format!("{prefix}~"),
                Order::Forward,
                limit,
                after,
                |_| true,
            );
            let relations = merge::merge(
                self.table.as_ref(),
                vec![stream],
                Order::Forward,
                limit,
                |item| s(item, CLINICIAN_INDEX.sk).unwrap_or_default(),
            )
            .await?;
            let keys: Vec<Key> = relations
                .items
                .iter()
                .filter_map(|item| s(item, "mrn"))
                .filter_map(|mrn| ward_domain::Mrn::parse(&mrn).ok())
                .map(|mrn| super::patient_key(&self.pseudonyms, &actor.provider, &mrn))
                .collect();
            let mut patients = if keys.is_empty() {
                Vec::new()
            } else {
                self.table.batch_get(keys).await?
            };
            // In MRN order, as the relations are (a batch read keeps no order).
            patients.sort_by_key(|patient| s(patient, PK));
            Ok(Listed {
                items: patients.iter().map(stored).collect(),
                next: relations.next,
            })
        }
        .await;
        self.audited(actor, "LIST", Kind::Patient, Some(clinician), None, result)
            .await
    }

    /// A clinic's appointments on one local day, in time order (`GSI2`).
    pub async fn clinic_day(
        &self,
        actor: &Actor,
        clinic: &str,
        day: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Listed, EmrError> {
        let result = async {
            let clinic_name = parse_clinic(clinic)?;
            if ward_domain::time::parse_date(day).is_none() {
                return Err(invalid("date", "must be a real date written YYYY-MM-DD"));
            }
            self.gsi2_partition(
                keys::clinic_day_pk(&actor.provider, &clinic_name, day),
                limit,
                cursor,
            )
            .await
        }
        .await;
        self.audited(actor, "LIST", Kind::Appointment, Some(clinic), None, result)
            .await
    }

    /// Clinical records or documents of one type across the provider, in time order: the
    /// type's index shards (`GSI3`) merged.
    pub async fn by_type(
        &self,
        actor: &Actor,
        kind: Kind,
        item_type: &str,
        filter: ListFilter,
    ) -> Result<Listed, EmrError> {
        let result = async {
            let allowed = match kind {
                Kind::ClinicalRecord => model::RECORD_TYPES,
                _ => model::DOCUMENT_TYPES,
            };
            if !allowed.contains(&item_type) {
                return Err(invalid(
                    "type",
                    format!("must be one of {}", allowed.join(", ")),
                ));
            }
            let (low, high) = time_range("", &filter)?;
            let after = filter
                .cursor
                .as_deref()
                .map(merge::decode_cursor)
                .transpose()?;
            let streams = (0..EMR_INDEX_SHARDS)
                .map(|shard| {
                    let pk = match kind {
                        Kind::ClinicalRecord => {
                            keys::records_by_type_pk(&actor.provider, item_type, shard)
                        }
                        _ => keys::documents_by_type_pk(&actor.provider, item_type, shard),
                    };
                    range_stream(
                        Some(TYPE_INDEX.name),
                        pk,
                        TYPE_INDEX.sk,
                        low.clone(),
                        high.clone(),
                        filter.order,
                        filter.limit,
                        after.clone(),
                        |_| true,
                    )
                })
                .collect();
            self.merged(streams, filter.order, filter.limit, TYPE_INDEX.sk)
                .await
        }
        .await;
        self.audited(actor, "LIST", kind, Some(item_type), None, result)
            .await
    }

    /// `streams` merged by the sort-key attribute `sk_attr`, as a page of representations.
    pub(super) async fn merged(
        &self,
        streams: Vec<Stream>,
        order: Order,
        limit: usize,
        sk_attr: &'static str,
    ) -> Result<Listed, EmrError> {
        let merged = merge::merge(self.table.as_ref(), streams, order, limit, |item| {
            s(item, sk_attr).unwrap_or_default()
        })
        .await?;
        Ok(listed(merged))
    }

    /// Every item of one `GSI2` partition in `GSI2SK` order, paged.
    pub(super) async fn gsi2_partition(
        &self,
        pk: String,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Listed, EmrError> {
        let after = cursor.map(merge::decode_cursor).transpose()?;
        let stream = range_stream(
            Some(LIST_INDEX.name),
            pk,
            LIST_INDEX.sk,
            String::new(),
            "~".into(),
            Order::Forward,
            limit,
            after,
            |_| true,
        );
        self.merged(vec![stream], Order::Forward, limit, LIST_INDEX.sk)
            .await
    }
}

/// The clinician whose partition a list reads: any, for a provider-wide actor; only its
/// own, for a clinician (another's is `NotFound`).
fn own_partition(actor: &Actor, clinician: &str) -> Result<ward_domain::ClinicianId, EmrError> {
    let clinician_id = parse_clinician("id", clinician)?;
    if actor
        .link
        .clinician()
        .is_some_and(|own| *own != clinician_id)
    {
        return Err(EmrError::NotFound(Kind::Clinician.noun()));
    }
    Ok(clinician_id)
}

fn listed(merged: Merged) -> Listed {
    Listed {
        items: merged.items.iter().map(stored).collect(),
        next: merged.next,
    }
}

/// Sort-key bounds of `{prefix}{id}` items between the filter's times.
fn time_range(prefix: &str, filter: &ListFilter) -> Result<(String, String), EmrError> {
    if let (Some(from), Some(to)) = (filter.from, filter.to)
        && from > to
    {
        return Err(invalid("from", "is after to"));
    }
    let low = match filter.from {
        Some(from) => format!("{prefix}{}", compact(from)),
        None => prefix.to_owned(),
    };
    let high = match filter.to {
        Some(to) => format!("{prefix}{}~", compact(to)),
        None => format!("{prefix}~"),
    };
    Ok((low, high))
}

fn attribute_filter(filter: &ListFilter) -> impl Fn(&Item) -> bool + Send + Sync + 'static {
    let (item_type, status) = (filter.item_type.clone(), filter.status.clone());
    move |item| {
        item_type
            .as_deref()
            .is_none_or(|t| s(item, "itemType").as_deref() == Some(t))
            && status
                .as_deref()
                .is_none_or(|st| s(item, "status").as_deref() == Some(st))
    }
}

/// One partition read between `low` and `high` (sort-key attribute `sk_attr`), resuming
/// after the merge key `after`, keeping what `keep` accepts.
#[allow(clippy::too_many_arguments)]
pub(super) fn range_stream(
    index: Option<&'static str>,
    pk: String,
    sk_attr: &'static str,
    low: String,
    high: String,
    order: Order,
    limit: usize,
    after: Option<String>,
    keep: impl Fn(&Item) -> bool + Send + Sync + 'static,
) -> Stream {
    let (low, high) = match (&after, order) {
        (Some(after), Order::Forward) if *after > low => (after.clone(), high),
        (Some(after), Order::Reverse) if *after < high => (low, after.clone()),
        _ => (low, high),
    };
    // DynamoDB refuses an empty key value, even as a bound.
    let sk = if low.is_empty() {
        SkCondition::Le(high)
    } else {
        SkCondition::Between(low, high)
    };
    Stream {
        query: Query {
            index,
            pk,
            sk,
            order,
            limit,
            cursor: None,
        },
        keep: Box::new(move |item| {
            let key = s(item, sk_attr).unwrap_or_default();
            keep(item)
                && after.as_deref().is_none_or(|after| match order {
                    Order::Forward => key.as_str() > after,
                    Order::Reverse => key.as_str() < after,
                })
        }),
    }
}
