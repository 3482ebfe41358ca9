//! Linking the people named in exchange records to subjects.
//!
//! Every write path of the exchange links its identities through
//! [`link_identities`], and only through it, so that the whole exchange switches
//! to a faster registry call in one place. Today it registers the identities one
//! by one with [`SubjectRegistry::register`]: each costs a few statements (lookup
//! of candidates, the subject, the identity, its tokens), which on SQLite is most
//! of a batch chunk's time. `SubjectRegistry::register_many` (multi-row
//! statements, same results as sequential `register`) replaces the loop when it
//! lands.

use crate::clock::Clock;
use crate::normalize::{Identity, IdentityInput};
use crate::store::Tx;
use crate::subjects::{Linked, RegistryError, SubjectRegistry};

/// One identity to link, as submitted by `source_partner`.
pub struct LinkItem<'a> {
    pub source_partner: &'a str,
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
    let mut linked = Vec::with_capacity(items.len());
    for item in items {
        linked.push(
            registry
                .register(tx, item.source_partner, item.input, item.identity, clock)
                .await?,
        );
    }
    Ok(linked)
}
