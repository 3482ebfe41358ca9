//! How much sealing identifiers costs, per record: the vault's envelope encryption
//! (XChaCha20-Poly1305 under an age-wrapped data key) against sealing every record
//! to the vault recipient with age directly.
//!
//! `cargo bench --bench vault` prints seals/s, unseals/s and bytes of overhead per
//! record for a ~300-byte identity bundle. Plain `Instant` timing, one thread.

use std::hint::black_box;
use std::time::{Duration, Instant};

use crosswalk::clock::SystemClock;
use crosswalk::store::Store;
use crosswalk::vault::{RotationPolicy, Sealed, Vault};

/// A realistic identity bundle: the JSON the subject registry seals, with the free
/// text a referral often carries; about 300 bytes.
const BUNDLE: &[u8] = br#"["Jane Quintessa","Doe-Villanueva","1987-03-14","F","1428 Elm Street Apt 3B","Springfield","IL","62704","+15558675309","jane.quintessa.doe@example.org","seen at the bus shelter on 5th and Main; prefers Quinn; asked for a callback after 4pm on weekdays at the number above, not at work"]"#;

const ENVELOPE_SEALS: u32 = 200_000;
/// Seals per transaction, as a batch of requests would commit them.
const SEALS_PER_TX: u32 = 100;
/// How many distinct records the unseal loops cycle through.
const RECORDS: u32 = 1_000;
const AGE_SEALS: u32 = 5_000;
const COLD_UNSEALS: u32 = 300;

/// Timings of one way of sealing.
struct Figures {
    seal: Duration,
    seals: u32,
    unseal: Duration,
    unseals: u32,
    overhead: usize,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::connect(&url).await.expect("SQLite");
    store.migrate().await.expect("migrations");
    let identity = age::x25519::Identity::generate();
    println!("identity bundle: {} bytes", BUNDLE.len());

    let vault = Vault::new(
        identity.clone(),
        store.clone(),
        RotationPolicy::default(),
        crosswalk::randomness::os(),
    );
    let (envelope, sample) = envelope(&store, &vault).await;
    let cold = cold_unseal(&store, &identity, &sample).await;
    let raw_age = raw_age(&identity);
    let aead = aead_alone();

    println!();
    println!(
        "{:<32} {:>10} {:>10} {:>10} {:>10} {:>18}",
        "per record", "seals/s", "µs/seal", "unseals/s", "µs/unseal", "mean overhead (B)"
    );
    for (name, f) in [
        ("envelope (XChaCha20-Poly1305)", &envelope),
        ("raw age X25519", &raw_age),
    ] {
        println!(
            "{name:<32} {:>10.0} {:>10.2} {:>10.0} {:>10.2} {:>18}",
            rate(f.seals, f.seal),
            micros(f.seal, f.seals),
            rate(f.unseals, f.unseal),
            micros(f.unseal, f.unseals),
            f.overhead
        );
    }
    println!(
        "\nof an envelope seal, the AEAD itself (random nonce, encrypt) takes {:.2} µs",
        micros(aead, ENVELOPE_SEALS)
    );
    println!(
        "envelope unseals above are warm (data key cached); the first unseal under a \
         key in a process reads and age-decrypts it: {:.1} µs",
        micros(cold, COLD_UNSEALS)
    );
    store.close().await;
}

/// Seals through the vault (rotating every 100,000 seals, as by default), then
/// unseals with the data key cached. Returns one sealed record for the cold test.
async fn envelope(store: &Store, vault: &Vault) -> (Figures, Sealed) {
    let clock = SystemClock;
    let mut sealed = Vec::new();
    let start = Instant::now();
    for batch in 0..ENVELOPE_SEALS / SEALS_PER_TX {
        let mut tx = store.begin().await.expect("begin");
        for i in 0..SEALS_PER_TX {
            let n = batch * SEALS_PER_TX + i;
            let s = vault
                .seal(&mut tx, &context(n), black_box(BUNDLE), &clock)
                .await
                .expect("seal");
            if n < RECORDS {
                sealed.push(s);
            } else {
                black_box(s);
            }
        }
        tx.commit().await.expect("commit");
    }
    let seal = start.elapsed();

    let contexts: Vec<Vec<u8>> = (0..RECORDS).map(context).collect();
    let start = Instant::now();
    for n in 0..ENVELOPE_SEALS as usize {
        let i = n % sealed.len();
        let plain = vault
            .unseal(&contexts[i], &sealed[i])
            .await
            .expect("unseal");
        black_box(plain);
    }
    let unseal = start.elapsed();
    let figures = Figures {
        seal,
        seals: ENVELOPE_SEALS,
        unseal,
        unseals: ENVELOPE_SEALS,
        overhead: sealed[0].as_bytes().len() - BUNDLE.len(),
    };
    (figures, sealed.swap_remove(0))
}

/// Unseals with a new vault each time: a database read and an age decrypt.
async fn cold_unseal(store: &Store, identity: &age::x25519::Identity, sealed: &Sealed) -> Duration {
    let start = Instant::now();
    for _ in 0..COLD_UNSEALS {
        let cold = Vault::new(
            identity.clone(),
            store.clone(),
            RotationPolicy::default(),
            crosswalk::randomness::os(),
        );
        black_box(cold.unseal(&context(0), sealed).await.expect("unseal"));
    }
    start.elapsed()
}

/// One X25519 age file per record, the alternative to envelope encryption.
fn raw_age(identity: &age::x25519::Identity) -> Figures {
    let recipient = identity.to_public();
    let start = Instant::now();
    let sealed: Vec<Vec<u8>> = (0..AGE_SEALS)
        .map(|_| age::encrypt(&recipient, black_box(BUNDLE)).expect("age encrypt"))
        .collect();
    let seal = start.elapsed();
    let start = Instant::now();
    for ciphertext in &sealed {
        black_box(age::decrypt(identity, ciphertext).expect("age decrypt"));
    }
    // age adds a random-length "grease" stanza to each header, so the overhead
    // varies from record to record: report the mean.
    let total: usize = sealed.iter().map(|c| c.len() - BUNDLE.len()).sum();
    let (shortest, longest) = sealed.iter().fold((usize::MAX, 0), |(lo, hi), c| {
        (lo.min(c.len()), hi.max(c.len()))
    });
    println!(
        "raw age overhead per record: {} to {} bytes",
        shortest - BUNDLE.len(),
        longest - BUNDLE.len()
    );
    Figures {
        seal,
        seals: AGE_SEALS,
        unseal: start.elapsed(),
        unseals: AGE_SEALS,
        overhead: total / sealed.len(),
    }
}

/// XChaCha20-Poly1305 on the bundle with nothing around it, to show what the
/// vault adds (key bookkeeping, framing, associated data).
fn aead_alone() -> Duration {
    use chacha20poly1305::aead::{Aead as _, Payload};
    use chacha20poly1305::{KeyInit as _, XChaCha20Poly1305, XNonce};
    let cipher = XChaCha20Poly1305::new(&[7u8; 32].into());
    let start = Instant::now();
    for n in 0..ENVELOPE_SEALS {
        let mut nonce = [0u8; 24];
        crosswalk::randomness::Randomness::fill(&crosswalk::randomness::OsRandomness, &mut nonce)
            .expect("OS RNG");
        let payload = Payload {
            msg: black_box(BUNDLE),
            aad: &context(n),
        };
        black_box(
            cipher
                .encrypt(XNonce::from_slice(&nonce), payload)
                .expect("encrypt"),
        );
    }
    start.elapsed()
}

fn context(n: u32) -> Vec<u8> {
    format!("identities:{n:08}").into_bytes()
}

fn rate(count: u32, elapsed: Duration) -> f64 {
    f64::from(count) / elapsed.as_secs_f64()
}

fn micros(elapsed: Duration, count: u32) -> f64 {
    elapsed.as_secs_f64() * 1e6 / f64::from(count)
}
