//! Linking the people named in exchange records to subjects.
//!
//! Every write path of the exchange links its identities through
//! [`link_identities`], and only through it. It hands the whole group to
//! [`SubjectRegistry::register_many`]: the same results as registering the
//! identities one by one with [`SubjectRegistry::register`], but in a constant
//! number of multi-row statements per group instead of a few per identity (which
//! on SQLite was most of a batch chunk's time).

use crate::clock::Clock;
use crate::normalize::{Identity, IdentityInput};
use crate::store::Tx;
use crate::subjects::{Linked, NewSubjectIdentity, RegistryError, SubjectRegistry};

/// One identity to link, as submitted by `source_partner` (and, for a
/// referral, held by the CBO it is assigned to as well).
pub struct LinkItem<'a> {
    pub source_partner: &'a str,
    pub assigned_cbo: Option<&'a str>,
    pub input: &'a IdentityInput,
    pub identity: &'a Identity,
}

/// Seals, fingerprints and links `items` in order inside `tx`; the results are in
/// the same order. A later item links to an earlier one of the same call exactly
/// as if they had come in two requests.
pub async fn link_identities(
    registry: &SubjectRegistry,
    tx: &mut Tx<'_>,
    items: &[LinkItem<'_>],
    clock: &dyn Clock,
) -> Result<Vec<Linked>, RegistryError> {
    let items: Vec<NewSubjectIdentity<'_>> = items
        .iter()
        .map(|item| NewSubjectIdentity {
            source_partner: item.source_partner,
            assigned_cbo: item.assigned_cbo,
            input: item.input,
            identity: item.identity,
        })
        .collect();
    registry.register_many(tx, &items, clock).await
}
