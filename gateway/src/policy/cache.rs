//! Decisions remembered per distinct input, inside one loaded bundle.
//!
//! The cache lives in the snapshot, so a reload starts with an empty one: a
//! decision is never served by a bundle other than the one that made it.
//!
//! The key is the [`DecisionInput`], which holds exactly what the policy sees:
//! the consent on file counts by its scope, not its id (see
//! [`super::ConsentScope`]), so a police list of a thousand outcomes under a
//! thousand consents of one scope costs one evaluation.
//!
//! Bounded by emptying it when full rather than by LRU bookkeeping: the working
//! set (partners × purposes × actions × resources × relationships × consents on
//! file) is small, a miss costs one evaluation, and a hit stays a read lock and
//! one hash lookup. A std `RwLock`, not a Tokio one: nothing awaits while it is
//! held.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use super::decision::Decision;
use super::input::DecisionInput;

/// Entries kept before the cache is emptied.
pub(super) const CAPACITY: usize = 16_384;

#[derive(Debug)]
pub(super) struct DecisionCache {
    entries: RwLock<HashMap<DecisionInput, Arc<Decision>>>,
    capacity: usize,
}

impl DecisionCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            capacity,
        }
    }

    pub fn get(&self, input: &DecisionInput) -> Option<Arc<Decision>> {
        // A poisoned lock only means a panic elsewhere while inserting; the map
        // itself is always whole (insert and clear do not unwind half-way).
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries.get(input).cloned()
    }

    pub fn insert(&self, input: DecisionInput, decision: Arc<Decision>) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(input, decision);
    }

    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
