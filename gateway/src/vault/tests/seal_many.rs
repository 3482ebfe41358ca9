//! [`Vault::seal_many`]: a batch seals as single seals would — same rotation, same
//! key-row guarantee — on both backends.

use super::*;

on_both_backends!(
    seal_many_opens_each_value_in_order,
    seal_many_rotates_keys_inside_a_batch,
    seal_many_after_a_rolled_back_batch_commits_the_key_row,
);

fn plaintexts(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("record {i}").into_bytes()).collect()
}

/// Seals `plaintexts[i]` for `context(first + i)` in one committed transaction.
async fn seal_many_committed(
    vault: &Vault,
    first: usize,
    plaintexts: &[Vec<u8>],
    clock: &FixedClock,
) -> Vec<Sealed> {
    let contexts: Vec<Vec<u8>> = (first..first + plaintexts.len()).map(context).collect();
    let values: Vec<ToSeal<'_>> = contexts
        .iter()
        .zip(plaintexts)
        .map(|(context, plaintext)| ToSeal { context, plaintext })
        .collect();
    let mut tx = vault.inner.store.begin().await.expect("begin");
    let sealed = vault
        .seal_many(&mut tx, &values, clock)
        .await
        .expect("seal_many");
    tx.commit().await.expect("commit");
    sealed
}

async fn opens_all(vault: &Vault, first: usize, plaintexts: &[Vec<u8>], sealed: &[Sealed]) {
    assert_eq!(sealed.len(), plaintexts.len());
    for (i, (plaintext, value)) in plaintexts.iter().zip(sealed).enumerate() {
        let opened = vault
            .unseal(&context(first + i), value)
            .await
            .expect("unseal");
        assert_eq!(&opened[..], &plaintext[..], "value {i}");
        assert!(
            vault.unseal(&context(first + i + 1), value).await.is_err(),
            "bound to its own row"
        );
    }
}

async fn seal_many_opens_each_value_in_order(store: Store) {
    let identity = age::x25519::Identity::generate();
    let origin = vault(&store, &identity, RotationPolicy::default());

    let nothing = seal_many_committed(&origin, 0, &[], &clock_at(0)).await;
    assert!(nothing.is_empty());
    assert_eq!(key_count(&store).await, 0, "an empty batch writes nothing");

    let values = plaintexts(25);
    let sealed = seal_many_committed(&origin, 0, &values, &clock_at(0)).await;
    assert_eq!(key_count(&store).await, 1);
    let nonces: std::collections::HashSet<&[u8]> =
        sealed.iter().map(|s| &s.as_bytes()[17..41]).collect();
    assert_eq!(nonces.len(), values.len(), "a fresh nonce for every value");
    // Another replica, cold cache: the key row committed with the batch.
    let replica = vault(&store, &identity, RotationPolicy::default());
    opens_all(&replica, 0, &values, &sealed).await;
}

async fn seal_many_rotates_keys_inside_a_batch(store: Store) {
    let identity = age::x25519::Identity::generate();
    let policy = RotationPolicy {
        max_seals_per_key: 3,
        ..RotationPolicy::default()
    };
    let vault = vault(&store, &identity, policy);
    let single = seal_committed(&vault, &context(0), b"record 0", &clock_at(0)).await;
    let values = plaintexts(11);
    let batch = seal_many_committed(&vault, 1, &values[1..], &clock_at(0)).await;
    // 1 single + 10 batched seals, 3 per key: 3 + 3 + 3 + 2.
    assert_eq!(key_count(&store).await, 4);
    let keys: Vec<_> = std::iter::once(&single)
        .chain(&batch)
        .map(|s| s.key_id().expect("key id"))
        .collect();
    for (i, pair) in keys.windows(2).enumerate() {
        assert_eq!(
            pair[0] == pair[1],
            (i + 1) % 3 != 0,
            "a new key after every third seal"
        );
    }
    // A day later the current key is too old even with seals left.
    let later = seal_many_committed(&vault, 11, &plaintexts(1), &clock_at(24)).await;
    assert_ne!(later[0].key_id().ok(), keys.last().copied());
    assert_eq!(key_count(&store).await, 5);

    let fresh = Vault::new(identity, store, policy, crate::randomness::os());
    opens_all(&fresh, 1, &values[1..], &batch).await;
    opens_all(&fresh, 0, &values[..1], std::slice::from_ref(&single)).await;
}

/// The batch that created a data key rolls back; the next batch under the same
/// key still commits the key row with its records.
async fn seal_many_after_a_rolled_back_batch_commits_the_key_row(store: Store) {
    let identity = age::x25519::Identity::generate();
    let vault = vault(&store, &identity, RotationPolicy::default());
    let values = plaintexts(8);
    let contexts: Vec<Vec<u8>> = (0..8).map(context).collect();
    let to_seal: Vec<ToSeal<'_>> = contexts
        .iter()
        .zip(&values)
        .map(|(context, plaintext)| ToSeal { context, plaintext })
        .collect();
    let mut tx = store.begin().await.expect("begin");
    let lost = vault
        .seal_many(&mut tx, &to_seal, &clock_at(0))
        .await
        .expect("seal_many");
    tx.rollback().await.expect("rollback");
    assert_eq!(key_count(&store).await, 0);

    // Seals 9..16 under the same key: the 16th is a power of two, so the batch
    // looks for the row, does not find it, and writes it again.
    let kept = seal_many_committed(&vault, 8, &plaintexts(8), &clock_at(0)).await;
    assert_eq!(lost[0].key_id().ok(), kept[0].key_id().ok(), "the same key");
    assert_eq!(key_count(&store).await, 1);
    let fresh = Vault::new(
        identity,
        store,
        RotationPolicy::default(),
        crate::randomness::os(),
    );
    opens_all(&fresh, 8, &plaintexts(8), &kept).await;
}
