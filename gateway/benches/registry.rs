//! How many identities per second the subject registry resolves and stores:
//! `register` one identity at a time against `register_many` per chunk, on a
//! SQLite file (WAL) and — when `TEST_DATABASE_URL` names a server — on
//! PostgreSQL (in a fresh database, dropped afterwards).
//!
//! `cargo bench --bench registry` first fills the database with
//! `REGISTRY_PREPOPULATE` identities (default 100,000: synthetic people and
//! corrupted duplicates of some), so that candidate lookups run against indexes
//! of a realistic size, then registers `REGISTRY_N` more (default 20,000 per
//! chunk size; `register` gets a tenth of that) in one transaction per chunk, as
//! the batch endpoint does. About a fifth of those are corrupted copies of
//! people already stored or sent earlier in the stream, some in the same chunk.
//!
//! `REGISTRY_BACKENDS` (default `sqlite,postgres`) picks the backends.
//!
//! It prints identities/s, per-chunk latency percentiles and where the time goes
//! per identity: the registry's tracing spans (fingerprints, the candidate
//! lookup, resolution, sealing, each INSERT) summed by a small layer, plus the
//! commit. Normalization is done beforehand and not timed. The database is
//! `ANALYZE`d after it is filled, and grows by each run's identities, so later
//! rows run on a slightly larger database.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, filter};

use crosswalk::clock::SystemClock;
use crosswalk::linkage::synth;
use crosswalk::normalize::{Identity, IdentityInput, NormalizeOptions, normalize};
use crosswalk::secrets::MasterSecret;
use crosswalk::store::Store;
use crosswalk::subjects::{Linked, NewSubjectIdentity, SubjectRegistry};
use crosswalk::vault::{RotationPolicy, Vault};

/// Chunk sizes `register_many` is measured with.
const CHUNK_SIZES: [usize; 3] = [100, 500, 1000];
/// Identities per transaction when calling `register` one at a time.
const SEQUENTIAL_CHUNK: usize = 500;
/// Chunk size used to fill the database.
const PREPOPULATE_CHUNK: usize = 1000;
/// Share of the measured stream that are corrupted copies of someone already
/// stored or sent earlier.
const DUPLICATE_RATE: f64 = 0.2;

fn main() {
    let phases = Phases::default();
    let subscriber = tracing_subscriber::registry().with(PhaseLayer(phases.clone()).with_filter(
        filter::filter_fn(|meta| meta.is_span() && meta.target().starts_with("crosswalk")),
    ));
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(run(&phases));
}

async fn run(phases: &Phases) {
    let prepopulate = env("REGISTRY_PREPOPULATE", 100_000);
    let n = env("REGISTRY_N", 20_000);
    println!(
        "prepopulated identities: {prepopulate}; measured per chunk size: {n} ({} for register)",
        n / 10
    );
    let backends = std::env::var("REGISTRY_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let dir = tempfile::tempdir().expect("a temp dir");
    if backends.contains("sqlite") {
        let sqlite = format!("sqlite://{}", dir.path().join("registry.db").display());
        bench_backend("SQLite", &sqlite, prepopulate, n, phases).await;
    }
    if !backends.contains("postgres") {
        return;
    }
    match std::env::var("TEST_DATABASE_URL") {
        Ok(admin) => {
            let (url, name) = create_postgres_database(&admin).await;
            bench_backend("PostgreSQL", &url, prepopulate, n, phases).await;
            drop_postgres_database(&admin, &name).await;
        }
        Err(_) => println!("\nPostgreSQL skipped: set TEST_DATABASE_URL=postgres://..."),
    }
}

async fn bench_backend(name: &str, url: &str, prepopulate: usize, n: usize, phases: &Phases) {
    println!("\n== {name} ==");
    let store = Store::connect(url).await.expect("connect");
    store.migrate().await.expect("migrate");
    let master = MasterSecret::from_bytes([7; 32]);
    let vault = Vault::new(
        age::x25519::Identity::generate(),
        store.clone(),
        RotationPolicy::default(),
        crosswalk::randomness::os(),
    );
    let registry = SubjectRegistry::open(&store, &master, vault)
        .await
        .expect("registry");

    let mut stream = Stream::new(prepopulate);
    let stored = stream.prepopulation(prepopulate);
    let started = Instant::now();
    let linked = register_chunks(&store, &registry, &stored, PREPOPULATE_CHUNK).await;
    println!(
        "prepopulated {} identities in {:.1} s ({:.0}/s), {} subjects",
        stored.len(),
        started.elapsed().as_secs_f64(),
        rate(stored.len(), started.elapsed()),
        linked.subjects.len()
    );
    let mut known_subjects = linked.subjects;
    // A database of this size in service has planner statistics (PostgreSQL's
    // autovacuum gathers them; SQLite's are what `ANALYZE` leaves); one filled
    // in a minute does not yet.
    let mut tx = store.begin().await.expect("begin");
    sqlx::query("ANALYZE")
        .execute(&mut *tx)
        .await
        .expect("ANALYZE");
    tx.commit().await.expect("commit");

    println!(
        "\n{:<22} {:>8} {:>10} {:>9} {:>9} {:>9} {:>8}",
        "", "chunk", "ids/s", "p50 ms", "p99 ms", "max ms", "linked"
    );
    let mut breakdowns = Vec::new();
    let sequential = stream.measured(n / 10);
    phases.reset();
    let run = register_one_by_one(&store, &registry, &sequential).await;
    print_row(
        "register",
        SEQUENTIAL_CHUNK,
        &sequential,
        &run,
        &known_subjects,
    );
    breakdowns.push((
        "register".to_owned(),
        sequential.len(),
        phases.take(),
        run.commit,
    ));
    known_subjects.extend(run.subjects);
    for chunk in CHUNK_SIZES {
        let items = stream.measured(n);
        phases.reset();
        let run = register_chunks(&store, &registry, &items, chunk).await;
        print_row("register_many", chunk, &items, &run, &known_subjects);
        breakdowns.push((
            format!("register_many {chunk}"),
            items.len(),
            phases.take(),
            run.commit,
        ));
        known_subjects.extend(run.subjects);
    }
    print_breakdowns(&breakdowns);
    store.close().await;
}

/// One identity to register, normalized beforehand.
struct Item {
    partner: &'static str,
    /// The CBO holding it too, as the intake gives a police referral's.
    cbo: Option<&'static str>,
    input: IdentityInput,
    identity: Identity,
}

/// What registering a list did.
struct Run {
    elapsed: Duration,
    /// Wall time of each chunk's transaction, begin to commit.
    chunk_times: Vec<Duration>,
    commit: Duration,
    /// Subjects given out, and how many identities went to a subject that
    /// existed before them.
    subjects: HashSet<String>,
    linked: usize,
}

async fn register_chunks(
    store: &Store,
    registry: &SubjectRegistry,
    items: &[Item],
    chunk: usize,
) -> Run {
    let mut run = Run::new();
    let started = Instant::now();
    for chunk in items.chunks(chunk) {
        let chunk_started = Instant::now();
        let new: Vec<NewSubjectIdentity<'_>> = chunk
            .iter()
            .map(|item| NewSubjectIdentity {
                source_partner: item.partner,
                assigned_cbo: item.cbo,
                input: &item.input,
                identity: &item.identity,
            })
            .collect();
        let mut tx = store.begin().await.expect("begin");
        let linked = registry
            .register_many(&mut tx, &new, &SystemClock)
            .await
            .expect("register_many");
        let committing = Instant::now();
        tx.commit().await.expect("commit");
        run.commit += committing.elapsed();
        run.chunk_times.push(chunk_started.elapsed());
        run.count(&linked);
    }
    run.elapsed = started.elapsed();
    run
}

async fn register_one_by_one(store: &Store, registry: &SubjectRegistry, items: &[Item]) -> Run {
    let mut run = Run::new();
    let started = Instant::now();
    for chunk in items.chunks(SEQUENTIAL_CHUNK) {
        let chunk_started = Instant::now();
        let mut tx = store.begin().await.expect("begin");
        let mut linked = Vec::with_capacity(chunk.len());
        for item in chunk {
            linked.push(
                registry
                    .register_identity(
                        &mut tx,
                        &NewSubjectIdentity {
                            source_partner: item.partner,
                            assigned_cbo: item.cbo,
                            input: &item.input,
                            identity: &item.identity,
                        },
                        &SystemClock,
                    )
                    .await
                    .expect("register"),
            );
        }
        let committing = Instant::now();
        tx.commit().await.expect("commit");
        run.commit += committing.elapsed();
        run.chunk_times.push(chunk_started.elapsed());
        run.count(&linked);
    }
    run.elapsed = started.elapsed();
    run
}

impl Run {
    fn new() -> Self {
        Self {
            elapsed: Duration::ZERO,
            chunk_times: Vec::new(),
            commit: Duration::ZERO,
            subjects: HashSet::new(),
            linked: 0,
        }
    }

    fn count(&mut self, linked: &[Linked]) {
        for l in linked {
            if !self.subjects.insert(l.subject_id.clone()) {
                self.linked += 1;
            }
        }
    }
}

fn print_row(label: &str, chunk: usize, items: &[Item], run: &Run, before: &HashSet<String>) {
    let mut times = run.chunk_times.clone();
    times.sort_unstable();
    // Nearest rank: the chunk below which a share `p` of the chunks fall.
    let pct = |p: usize| {
        let i = (times.len().saturating_sub(1) * p).div_ceil(100);
        times.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    // Identities whose subject existed before them: in the database before this
    // run, or given to an earlier identity of the run.
    let linked = run.linked + run.subjects.intersection(before).count();
    println!(
        "{label:<22} {chunk:>8} {:>10.0} {:>9.1} {:>9.1} {:>9.1} {:>7.0}%",
        rate(items.len(), run.elapsed),
        pct(50),
        pct(99),
        pct(100),
        percent(linked, items.len()),
    );
}

/// Microseconds per identity in each phase, from the registry's spans.
fn print_breakdowns(rows: &[(String, usize, HashMap<&'static str, Duration>, Duration)]) {
    let mut names: Vec<&'static str> = rows
        .iter()
        .flat_map(|(_, _, phases, _)| phases.keys().copied())
        .collect();
    names.sort_unstable();
    names.dedup();
    println!(
        "\nwhere the time goes, µs per identity (spans nest: register_many includes the rest)"
    );
    print!("{:<40}", "span");
    for (label, ..) in rows {
        print!(" {label:>18}");
    }
    println!();
    for name in names.iter().copied().chain(std::iter::once("commit")) {
        print!("{name:<40}");
        for (_, count, phases, commit) in rows {
            let total = if name == "commit" {
                Some(*commit)
            } else {
                phases.get(name).copied()
            };
            match total {
                Some(total) => print!(" {:>18.2}", micros(total, *count)),
                None => print!(" {:>18}", "-"),
            }
        }
        println!();
    }
}

/// The synthetic identities: people to prepopulate with, people for the
/// measured stream, and corrupted copies of both.
struct Stream {
    rng: StdRng,
    stored_people: Vec<IdentityInput>,
    new_people: std::vec::IntoIter<IdentityInput>,
    /// Everyone sent so far in the measured stream, for duplicates of them.
    sent: Vec<IdentityInput>,
    options: NormalizeOptions,
}

impl Stream {
    fn new(prepopulate: usize) -> Self {
        let mut stored = synth::people(2026, prepopulate + 200_000);
        let new = stored.split_off(prepopulate * 17 / 20);
        Self {
            rng: StdRng::seed_from_u64(7),
            stored_people: stored,
            new_people: new.into_iter(),
            sent: Vec::new(),
            options: NormalizeOptions::new(
                phonenumber::country::Id::US,
                chrono::NaiveDate::from_ymd_opt(2026, 11, 23).expect("a date"),
            ),
        }
    }

    /// The database's starting content: the stored people and corrupted copies
    /// of some of them, `count` in all.
    fn prepopulation(&mut self, count: usize) -> Vec<Item> {
        let mut inputs = self.stored_people.clone();
        while inputs.len() < count {
            let i = self.rng.random_range(0..self.stored_people.len());
            let copy = self.corrupted(&self.stored_people[i].clone());
            inputs.push(copy);
        }
        self.items(inputs)
    }

    /// `count` identities to measure: new people, and corrupted copies of stored
    /// people and of people sent earlier in the stream (a third of those within
    /// the last few hundred, so often in the same chunk).
    fn measured(&mut self, count: usize) -> Vec<Item> {
        let mut inputs = Vec::with_capacity(count);
        while inputs.len() < count {
            let input = if self.rng.random_bool(DUPLICATE_RATE) && !self.sent.is_empty() {
                let source = match self.rng.random_range(0..3) {
                    0 => {
                        let recent = self.sent.len().saturating_sub(300);
                        self.sent[self.rng.random_range(recent..self.sent.len())].clone()
                    }
                    1 => self.sent[self.rng.random_range(0..self.sent.len())].clone(),
                    _ => self.stored_people[self.rng.random_range(0..self.stored_people.len())]
                        .clone(),
                };
                self.corrupted(&source)
            } else {
                self.new_people.next().expect("enough synthetic people")
            };
            self.sent.push(input.clone());
            inputs.push(input);
        }
        self.items(inputs)
    }

    fn corrupted(&mut self, person: &IdentityInput) -> IdentityInput {
        synth::corrupt(&mut self.rng, person, &synth::CorruptionConfig::default())
    }

    /// Police and health submit; each police record is held by a CBO too.
    fn items(&self, inputs: Vec<IdentityInput>) -> Vec<Item> {
        let sources = [
            ("pd", Some("cbo-north")),
            ("county-health", None),
            ("pd", Some("cbo-south")),
            ("county-health", None),
        ];
        inputs
            .into_iter()
            .enumerate()
            .filter_map(|(n, input)| {
                let identity = normalize(&input, &self.options).ok()?;
                let (partner, cbo) = sources[n % sources.len()];
                Some(Item {
                    partner,
                    cbo,
                    input,
                    identity,
                })
            })
            .collect()
    }
}

/// Sums the wall time of each span by name: what the registry's phases cost.
#[derive(Clone, Default)]
struct Phases(Arc<Mutex<HashMap<&'static str, Duration>>>);

impl Phases {
    fn reset(&self) {
        self.0.lock().expect("not poisoned").clear();
    }

    fn take(&self) -> HashMap<&'static str, Duration> {
        std::mem::take(&mut *self.0.lock().expect("not poisoned"))
    }
}

struct PhaseLayer(Phases);

/// When a span was created.
struct Opened(Instant);

impl<S> Layer<S> for PhaseLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        _attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Opened(Instant::now()));
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(opened) = span.extensions().get::<Opened>().map(|o| o.0) else {
            return;
        };
        *self
            .0
            .0
            .lock()
            .expect("not poisoned")
            .entry(span.name())
            .or_default() += opened.elapsed();
    }
}

async fn create_postgres_database(admin_url: &str) -> (String, String) {
    use sqlx::Connection as _;
    let name = format!(
        "crosswalk_bench_{}",
        crosswalk::randomness::unique_name_suffix(&crosswalk::randomness::OsRandomness)
            .expect("randomness")
    );
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("connect to TEST_DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create the bench database");
    let mut url = url::Url::parse(admin_url).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    (url.to_string(), name)
}

async fn drop_postgres_database(admin_url: &str, name: &str) {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("connect to TEST_DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .expect("drop the bench database");
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    float(count) / elapsed.as_secs_f64()
}

fn micros(elapsed: Duration, count: usize) -> f64 {
    elapsed.as_secs_f64() * 1e6 / float(count.max(1))
}

fn percent(part: usize, whole: usize) -> f64 {
    100.0 * float(part) / float(whole.max(1))
}

/// Counts here are far below 2^32.
fn float(n: usize) -> f64 {
    f64::from(u32::try_from(n).unwrap_or(u32::MAX))
}
