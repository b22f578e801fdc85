//! What the service answers a role that does not see clinical content: the same items
//! without their clinical fields. Every answer passes through `Emr::audited`, which
//! applies this, so no read path can forget it.

use serde_json::Value as Json;

use super::{BreakGlass, Listed, Stored, Timeline, TimelineItem};
use crate::model::Kind;

/// An answer of the service, which can leave out clinical content.
pub trait Answer {
    /// Leaves out what only roles that see clinical content may read: a visit's notes,
    /// an appointment's reason. (Clinical records and documents are never answered to
    /// such roles at all: the policy refuses their routes and the timeline does not
    /// query them.)
    fn withhold_clinical(&mut self) {}
}

/// The fields of an entity that are clinical content.
const CLINICAL_FIELDS: &[(Kind, &str)] = &[(Kind::Appointment, "reason")];

impl Answer for Stored {
    fn withhold_clinical(&mut self) {
        for (kind, field) in CLINICAL_FIELDS {
            if *kind == self.kind {
                self.fields.remove(*field);
            }
        }
    }
}

impl Answer for Listed {
    fn withhold_clinical(&mut self) {
        self.items.iter_mut().for_each(Answer::withhold_clinical);
    }
}

impl Answer for Timeline {
    fn withhold_clinical(&mut self) {
        for entry in &mut self.entries {
            match &mut entry.item {
                TimelineItem::Visit(Some(visit)) => visit.withhold_clinical(),
                TimelineItem::Visit(None) => {}
                TimelineItem::Entity(stored) => stored.withhold_clinical(),
            }
        }
    }
}

impl Answer for BreakGlass {}
impl Answer for Vec<Json> {}
impl<A: Answer, B> Answer for (A, B) {
    fn withhold_clinical(&mut self) {
        self.0.withhold_clinical();
    }
}
