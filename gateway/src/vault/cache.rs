//! The bounded cache of unsealed data keys.
//!
//! Entries are ciphers, which zeroize their key when dropped; an evicted key is
//! wiped once the last seal or unseal using it finishes (they share an `Arc`).

use std::collections::HashMap;
use std::sync::Arc;

use chacha20poly1305::XChaCha20Poly1305;

/// Least-recently-used, by a use counter: with a few dozen entries a linear scan on
/// eviction is cheaper and simpler than a linked list.
pub(super) struct KeyCache {
    capacity: usize,
    /// Bumped on every use; an entry's stamp is the tick it was last used at.
    tick: u64,
    entries: HashMap<uuid::Uuid, (Arc<XChaCha20Poly1305>, u64)>,
}

impl KeyCache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            tick: 0,
            entries: HashMap::with_capacity(capacity),
        }
    }

    pub(super) fn get(&mut self, id: uuid::Uuid) -> Option<Arc<XChaCha20Poly1305>> {
        self.tick += 1;
        let (cipher, used) = self.entries.get_mut(&id)?;
        *used = self.tick;
        Some(Arc::clone(cipher))
    }

    pub(super) fn insert(&mut self, id: uuid::Uuid, cipher: Arc<XChaCha20Poly1305>) {
        self.tick += 1;
        if self.entries.len() >= self.capacity
            && !self.entries.contains_key(&id)
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| *id)
        {
            self.entries.remove(&oldest);
        }
        self.entries.insert(id, (cipher, self.tick));
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}
