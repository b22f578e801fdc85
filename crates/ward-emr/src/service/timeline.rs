//! A patient's timeline: everything filed for the patient (CSV visits, appointments,
//! clinical records, documents, bills), merged by time from the kinds of item in the
//! patient's partition.

use ward_domain::key_layout as keys;
use ward_domain::{UploadId, UtcInstant};
use ward_store::merge::{self, Stream};
use ward_store::{Item, Order, Query, SK, SkCondition};

use super::{Emr, EmrError, ListFilter, Stored, compact, parse_mrn, s, stored};
use crate::audit::Actor;
use crate::model::Kind;

/// One entry of a patient's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    /// `visit`, `appointment`, `clinicalRecord`, `document` or `bill`.
    pub kind: &'static str,
    /// The instant it is filed under (sortable UTC).
    pub at: String,
    /// What it is.
    pub item: TimelineItem,
}

impl TimelineEntry {
    /// The API's representation: `{kind, at, item}`.
    pub fn representation(&self) -> serde_json::Value {
        let item = match &self.item {
            TimelineItem::Visit(visit) => serde_json::json!(visit),
            TimelineItem::Entity(stored) => stored.representation(),
        };
        serde_json::json!({"kind": self.kind, "at": self.at, "item": item})
    }
}

/// What a timeline entry holds.
#[derive(Debug, Clone, PartialEq)]
pub enum TimelineItem {
    /// A visit from a CSV upload (`None` if the stored item is unreadable).
    Visit(Option<ward_ports::VisitRecord>),
    /// An EMR entity.
    Entity(Stored),
}

/// A page of a patient's timeline.
#[derive(Debug)]
pub struct Timeline {
    /// The entries, in time order.
    pub entries: Vec<TimelineEntry>,
    /// The next page's cursor.
    pub next: Option<String>,
}

impl Emr {
    /// One timeline of everything filed for a patient (CSV visits, appointments, clinical
    /// records, documents, bills), merged by time from the patient partition's item kinds.
    /// Each entry is `{"kind", "at", "item"}`.
    pub async fn timeline(
        &self,
        actor: &Actor,
        mrn: &str,
        filter: ListFilter,
    ) -> Result<Timeline, EmrError> {
        let actor = &self
            .admitted(actor, "LIST", Kind::Patient, Some(mrn), mrn)
            .await?;
        let result = self.timeline_inner(actor, mrn, filter).await;
        self.audited(actor, "LIST", Kind::Patient, Some(mrn), Some(mrn), result)
            .await
    }

    async fn timeline_inner(
        &self,
        actor: &Actor,
        mrn: &str,
        filter: ListFilter,
    ) -> Result<Timeline, EmrError> {
        let mrn_id = parse_mrn(mrn)?;
        let pk = super::patient_pk(&self.pseudonyms, &actor.provider, &mrn_id);
        let after = filter
            .cursor
            .as_deref()
            .map(merge::decode_cursor)
            .transpose()?;
        let from = filter.from.map(|at| at.sortable()).unwrap_or_default();
        let to = filter
            .to
            .map(|at| at.sortable())
            .unwrap_or_else(|| "~".into());
        // Only the kinds the actor's role reads are queried at all (front desk and
        // billing: no clinical records or documents; bills for billing, not clinicians).
        let kinds: Vec<(&str, &str)> = [
            (keys::VISIT_SK_PREFIX, "visit", None),
            (
                keys::APPOINTMENT_SK_PREFIX,
                "appointment",
                Some(Kind::Appointment),
            ),
            (
                keys::CLINICAL_RECORD_SK_PREFIX,
                "clinicalRecord",
                Some(Kind::ClinicalRecord),
            ),
            (keys::DOCUMENT_SK_PREFIX, "document", Some(Kind::Document)),
            (keys::BILL_SK_PREFIX, "bill", Some(Kind::Bill)),
        ]
        .into_iter()
        .filter(|(_, _, kind)| kind.is_none_or(|kind| actor.reads(kind)))
        .map(|(prefix, name, _)| (prefix, name))
        .collect();
        let streams = kinds
            .iter()
            .map(|(prefix, _)| {
                let visits = *prefix == keys::VISIT_SK_PREFIX;
                // Sort-key bounds a little wider than the range (ids are whole seconds);
                // `keep` applies the exact range and the cursor on the merge key.
                let bound = |instant: Option<UtcInstant>, high: bool| match instant {
                    Some(at) if visits => keys::visit_sk(at) + if high { "~" } else { "" },
                    Some(at) => format!("{prefix}{}{}", compact(at), if high { "~" } else { "" }),
                    None if high => format!("{prefix}~"),
                    None => (*prefix).to_owned(),
                };
                let low = bound(filter.from, false);
                let high = bound(filter.to, true);
                let (from, to, after) = (from.clone(), to.clone(), after.clone());
                let order = filter.order;
                Stream {
                    query: Query {
                        index: None,
                        pk: pk.clone(),
                        sk: SkCondition::Between(low, high),
                        order,
                        limit: filter.limit,
                        cursor: None,
                    },
                    keep: Box::new(move |item| {
                        let key = timeline_key(item);
                        let instant = &key[..key.find('|').unwrap_or(key.len())];
                        instant >= from.as_str()
                            && instant <= to.as_str()
                            && after.as_deref().is_none_or(|after| match order {
                                Order::Forward => key.as_str() > after,
                                Order::Reverse => key.as_str() < after,
                            })
                    }),
                }
            })
            .collect();
        let merged = merge::merge(
            self.table.as_ref(),
            streams,
            filter.order,
            filter.limit,
            timeline_key,
        )
        .await?;
        let entries = merged
            .items
            .iter()
            .map(|item| {
                let sk = s(item, SK).unwrap_or_default();
                let kind = kinds
                    .iter()
                    .find(|(prefix, _)| sk.starts_with(prefix))
                    .map_or("unknown", |(_, name)| *name);
                let key = timeline_key(item);
                let at = key.split('|').next().unwrap_or_default().to_owned();
                let item = if kind == "visit" {
                    TimelineItem::Visit(ward_ports::VisitRecord::from_item(item))
                } else {
                    TimelineItem::Entity(stored(item))
                };
                TimelineEntry { kind, at, item }
            })
            .collect();
        Ok(Timeline {
            entries,
            next: merged.next,
        })
    }
}

/// The timeline's merge key: `{sortable instant}|{sort key}`.
fn timeline_key(item: &Item) -> String {
    let sk = s(item, SK).unwrap_or_default();
    let instant = match sk.strip_prefix(keys::VISIT_SK_PREFIX) {
        Some(sortable) => sortable.to_owned(),
        None => sk
            .split_once('#')
            .and_then(|(_, id)| UploadId::parse(id).ok())
            .map(|id| id.instant().sortable())
            .unwrap_or_default(),
    };
    format!("{instant}|{sk}")
}
