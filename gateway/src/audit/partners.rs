//! Partner registry changes in the audit log.
//!
//! The registry lives in the configuration file, which the gateway does not
//! write, so a change is noticed the only place it can be: at start-up.
//! [`record_registry_changes`] compares each partner's (kind, active, public key,
//! client-certificate fingerprint) — as BLAKE3 digests, never the keys
//! themselves — with what the database last recorded (`gateway_meta`), and
//! appends one `partner.change` entry per partner added, changed or removed,
//! saying which properties changed. The comparison and the update take the
//! chain head's lock first, so replicas starting together record each change
//! once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Event, GATEWAY_ACTOR, append};
use crate::clock::Clock;
use crate::config::{Config, PartnerConfig};
use crate::store::audit as repo;
use crate::store::{Store, StoreError};

/// The action of a registry change entry.
pub const PARTNER_CHANGE_ACTION: &str = "partner.change";
/// Where the last recorded registry digests live in `gateway_meta`.
const META_REGISTRY: &str = "audit_partner_registry";

/// What is compared per partner. Keys and fingerprints as digests: the record
/// shows *that* a key changed, not the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PartnerFacts {
    kind: String,
    active: bool,
    public_key: String,
    cert_fingerprint: Option<String>,
}

impl PartnerFacts {
    fn of(partner: &PartnerConfig) -> Self {
        // Whitespace and line breaks do not change a PEM key.
        let key: String = partner
            .public_key
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        Self {
            kind: partner.kind.as_str().to_owned(),
            active: partner.active,
            public_key: digest(&key),
            cert_fingerprint: partner
                .cert_fingerprint
                .as_deref()
                .map(|fp| digest(&fp.to_ascii_lowercase())),
        }
    }

    fn changed(&self, before: &Self) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.kind != before.kind {
            changed.push("kind");
        }
        if self.active != before.active {
            changed.push("active");
        }
        if self.public_key != before.public_key {
            changed.push("public_key");
        }
        if self.cert_fingerprint != before.cert_fingerprint {
            changed.push("cert_fingerprint");
        }
        changed
    }
}

fn digest(text: &str) -> String {
    hex::encode(&blake3::hash(text.as_bytes()).as_bytes()[..16])
}

/// Appends a `partner.change` entry for every partner added, changed or removed
/// since the last recorded registry, and records the current one. Returns how
/// many entries it appended.
pub async fn record_registry_changes(
    store: &Store,
    config: &Config,
    clock: &dyn Clock,
) -> Result<usize, StoreError> {
    let mut tx = store.begin().await?;
    repo::lock_head(&mut tx).await?;
    let recorded: BTreeMap<String, PartnerFacts> = Store::meta_get(&mut tx, META_REGISTRY)
        .await?
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let current: BTreeMap<String, PartnerFacts> = config
        .partners
        .iter()
        .map(|(id, partner)| (id.clone(), PartnerFacts::of(partner)))
        .collect();
    let events = changes(&recorded, &current);
    if events.is_empty() {
        return Ok(0);
    }
    let text = serde_json::to_string(&current).map_err(|_| StoreError::Corrupt {
        what: "the partner registry digest cannot be serialized",
    })?;
    Store::meta_set(&mut tx, META_REGISTRY, &text).await?;
    append(&mut tx, &events, clock).await?;
    tx.commit().await?;
    for event in &events {
        tracing::info!(
            partner = event.record_id.as_deref().unwrap_or_default(),
            change = event.reason.as_deref().unwrap_or_default(),
            "partner registry change recorded in the audit log"
        );
    }
    Ok(events.len())
}

/// The entries for going from `before` to `after`, in partner id order.
fn changes(
    before: &BTreeMap<String, PartnerFacts>,
    after: &BTreeMap<String, PartnerFacts>,
) -> Vec<Event> {
    let entry = |id: &str, change: &str, facts: &PartnerFacts| {
        Event::new(GATEWAY_ACTOR, PARTNER_CHANGE_ACTION)
            .with_record("partner", id)
            .with_reason(change)
            .with_detail(json!({"kind": facts.kind, "active": facts.active}))
    };
    let mut events = Vec::new();
    for (id, facts) in after {
        match before.get(id) {
            None => events.push(entry(id, "added", facts)),
            Some(old) => {
                let changed = facts.changed(old);
                if !changed.is_empty() {
                    let mut event = entry(id, "changed", facts);
                    event.detail = Some(json!({
                        "kind": facts.kind, "active": facts.active, "changed": changed,
                    }));
                    events.push(event);
                }
            }
        }
    }
    for (id, facts) in before {
        if !after.contains_key(id) {
            events.push(entry(id, "removed", facts));
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(active: bool, key: &str) -> PartnerFacts {
        PartnerFacts {
            kind: "cbo".into(),
            active,
            public_key: digest(key),
            cert_fingerprint: None,
        }
    }

    #[test]
    fn additions_changes_and_removals_are_each_one_entry() {
        let before = BTreeMap::from([
            ("cbo-north".to_owned(), facts(true, "k1")),
            ("cbo-south".to_owned(), facts(true, "k2")),
            ("gone".to_owned(), facts(true, "k3")),
        ]);
        let after = BTreeMap::from([
            ("cbo-north".to_owned(), facts(true, "k1")),
            ("cbo-south".to_owned(), facts(false, "k2b")),
            ("new".to_owned(), facts(true, "k4")),
        ]);

        let events = changes(&before, &after);

        let summary: Vec<(Option<&str>, Option<&str>)> = events
            .iter()
            .map(|e| (e.record_id.as_deref(), e.reason.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                (Some("cbo-south"), Some("changed")),
                (Some("new"), Some("added")),
                (Some("gone"), Some("removed")),
            ]
        );
        assert_eq!(
            events[0].detail.as_ref().map(|d| d["changed"].clone()),
            Some(json!(["active", "public_key"]))
        );
        assert!(changes(&after, &after).is_empty(), "no change, no entry");
    }

    #[test]
    fn keys_are_recorded_as_digests_only() {
        let key = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAWYyDeycxWEHTge1DW2Hnz6yrV/pfljGB1fMtz2Xgkrk=\n-----END PUBLIC KEY-----\n";
        let partner = |key: &str| -> PartnerConfig {
            toml::from_str(&format!(
                "kind = \"police\"\nname = \"PD\"\npublic_key = {}",
                toml::Value::String(key.to_owned())
            ))
            .expect("partner")
        };
        let recorded = serde_json::to_string(&PartnerFacts::of(&partner(key))).expect("json");
        assert!(!recorded.contains("MCowBQYDK2Vw"), "{recorded}");
        let reflowed = partner(&key.replace('\n', "\r\n"));
        assert_eq!(PartnerFacts::of(&reflowed), PartnerFacts::of(&partner(key)));
    }
}
