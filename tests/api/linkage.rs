//! The subject registry on a real database: identities link under field-entry
//! errors, no raw identifier rests in the database, and key rotation keeps every
//! link.

use chrono::{TimeZone as _, Utc};
use crosswalk::clock::{Clock, FixedClock};
use crosswalk::normalize::{IdentityInput, NormalizeOptions, normalize};
use crosswalk::secrets::{GatewayKeys, MasterSecret};
use crosswalk::store::Store;
use crosswalk::subjects::{
    Linked, RegistryError, RotationOptions, RotationReport, SubjectRegistry, rotate_keys,
};
use crosswalk::vault::{RotationPolicy, Vault};

use crate::backend_tests;
use crate::helpers::{Backend, TestDatabase, example_keys};

backend_tests!(
    one_person_spelled_three_ways_is_one_subject,
    an_identity_that_bridges_two_subjects_merges_them,
    known_identifiers_never_reach_the_database,
    rotation_keeps_every_link_and_resumes_after_interruption,
);

/// A registry on a fresh database with the example keys, and what it needs.
struct Fixture {
    db: TestDatabase,
    store: Store,
    keys: GatewayKeys,
    clock: FixedClock,
}

impl Fixture {
    async fn new(backend: Backend) -> Self {
        let db = TestDatabase::create(backend).await;
        let config = crosswalk::config::Config::load(
            &example_keys().join("crosswalk.toml"),
            std::iter::empty(),
        )
        .expect("example config");
        let keys = GatewayKeys::load(&config).expect("example keys");
        let store = Store::connect(&db.url).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
            .check_master_key(&keys.master.key_check())
            .await
            .expect("key check");
        let clock = FixedClock(
            Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
                .single()
                .expect("time"),
        );
        Self {
            db,
            store,
            keys,
            clock,
        }
    }

    fn vault(&self) -> Vault {
        Vault::new(
            self.keys.vault.clone(),
            self.store.clone(),
            RotationPolicy::default(),
            crosswalk::randomness::os(),
        )
    }

    fn options(&self) -> NormalizeOptions {
        NormalizeOptions::new(phonenumber::country::Id::US, self.clock.now().date_naive())
    }

    /// Rotates the database from the example master secret to `new_master`.
    async fn rotate_to(
        &self,
        new_master: &MasterSecret,
        options: RotationOptions,
    ) -> Result<RotationReport, RegistryError> {
        rotate_keys(
            &self.store,
            &self.vault(),
            &self.keys.master,
            new_master,
            &self.options(),
            options,
        )
        .await
    }

    async fn registry(&self, master: &MasterSecret) -> Result<SubjectRegistry, RegistryError> {
        SubjectRegistry::open(&self.store, master, self.vault()).await
    }

    async fn register(
        &self,
        registry: &SubjectRegistry,
        partner: &str,
        input: &IdentityInput,
    ) -> Linked {
        self.register_at(registry, partner, input, 0).await
    }

    /// Registers `input` as if `minutes` after the fixture's time.
    async fn register_at(
        &self,
        registry: &SubjectRegistry,
        partner: &str,
        input: &IdentityInput,
        minutes: i64,
    ) -> Linked {
        let clock = FixedClock(self.clock.0 + chrono::Duration::minutes(minutes));
        let identity = normalize(input, &self.options()).expect("valid identity");
        let mut tx = self.store.begin().await.expect("begin");
        let linked = registry
            .register(&mut tx, partner, input, &identity, &clock)
            .await
            .expect("register");
        tx.commit().await.expect("commit");
        linked
    }
}

fn person(
    given: &str,
    surname: &str,
    dob: &str,
    phone: Option<&str>,
    street: Option<&str>,
) -> IdentityInput {
    IdentityInput {
        given_name: Some(given.to_owned()),
        surname: Some(surname.to_owned()),
        dob: Some(dob.to_owned()),
        phone: phone.map(str::to_owned),
        street: street.map(str::to_owned),
        city: Some("Sacramento".to_owned()),
        state: Some("CA".to_owned()),
        zip: Some("95814".to_owned()),
        ..IdentityInput::default()
    }
}

async fn one_person_spelled_three_ways_is_one_subject(backend: Backend) {
    let f = Fixture::new(backend).await;
    let registry = f.registry(&f.keys.master).await.expect("registry");

    let police = f
        .register(
            &registry,
            "pd",
            &person(
                "José",
                "Núñez-García",
                "03/07/1984",
                Some("(916) 555-0142"),
                Some("12 Elm St."),
            ),
        )
        .await;
    let health = f
        .register(
            &registry,
            "county-health",
            &person(
                "Jose",
                "Nunez Garcia",
                "1984-03-07",
                None,
                Some("12 Elm Street"),
            ),
        )
        .await;
    let typo = f
        .register(
            &registry,
            "cbo-north",
            &person(
                "Jsoe",
                "Nunez-Garcia",
                "1984-07-03",
                Some("+1 916 555 0142"),
                None,
            ),
        )
        .await;
    let someone_else = f
        .register(
            &registry,
            "pd",
            &person(
                "Maria",
                "Okafor",
                "1990-11-02",
                Some("916-555-0199"),
                Some("8 Oak Ave"),
            ),
        )
        .await;

    assert_eq!(
        police.subject_id, health.subject_id,
        "case, diacritics, hyphen, DOB format"
    );
    assert_eq!(
        police.subject_id, typo.subject_id,
        "a typo and a transposed DOB"
    );
    assert_ne!(police.subject_id, someone_else.subject_id);
    let unlinkable = f
        .register(
            &registry,
            "pd",
            &IdentityInput {
                given_name: Some("Jose".into()),
                ..IdentityInput::default()
            },
        )
        .await;
    assert!(!unlinkable.linkable);
    assert_ne!(
        unlinkable.subject_id, police.subject_id,
        "never linked by guesswork"
    );
}

async fn an_identity_that_bridges_two_subjects_merges_them(backend: Backend) {
    let f = Fixture::new(backend).await;
    let registry = f.registry(&f.keys.master).await.expect("registry");
    // Two records that share only a given name and a date of birth, in different
    // places: not enough to link them.
    let mut by_email = person("Jordan", "Ellis", "1980-01-01", None, Some("4 Pine Road"));
    by_email.email = Some("jordan.e@example.org".to_owned());
    by_email.zip = Some("95820".to_owned());
    let by_phone = person(
        "Jordan",
        "Morales",
        "1980-01-01",
        Some("916-555-0100"),
        Some("77 River Drive"),
    );
    let first = f.register_at(&registry, "pd", &by_email, 0).await;
    let second = f
        .register_at(&registry, "county-health", &by_phone, 1)
        .await;
    assert_ne!(
        first.subject_id, second.subject_id,
        "not linked on their own"
    );

    // A third record carries the email of the first and the phone of the second.
    let mut bridge = person(
        "Jordan",
        "Ellis Morales",
        "1980-01-01",
        Some("(916) 555-0100"),
        None,
    );
    bridge.email = Some("Jordan.E@example.org".to_owned());
    let third = f.register_at(&registry, "cbo-north", &bridge, 2).await;

    assert_eq!(
        third.subject_id, first.subject_id,
        "merged into the older subject"
    );
    assert_eq!(third.merged, vec![second.subject_id.clone()]);
    let map = subject_map(&f).await;
    assert!(
        map.iter().all(|(_, subject)| *subject == first.subject_id),
        "all three on one subject: {map:?}"
    );
    let merges = merge_rows(&f).await;
    assert_eq!(
        merges,
        vec![(second.subject_id, first.subject_id, third.identity_id)]
    );
}

/// The recorded merges: (from, into, bridging identity).
async fn merge_rows(f: &Fixture) -> Vec<(String, String, String)> {
    use sqlx::Row as _;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&f.db.url).await.expect("connect");
    sqlx::query("SELECT from_subject, into_subject, identity_id FROM subject_merges")
        .fetch_all(&pool)
        .await
        .expect("merges")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Identifiers chosen to be unmistakable in a byte search, in the forms a
/// partner types them and the forms normalization produces.
const KNOWN: &[&str] = &[
    "Quintessa",
    "quintessa",
    "QUINTESSA",
    "Featherstonehaugh",
    "featherstonehaugh",
    "1987-06-05",
    "06/05/1987",
    "19870605",
    "9165550142",
    "+19165550142",
    "555-0142",
    "Larkspur",
    "larkspur",
    "quintessa.f@example.org",
];

async fn known_identifiers_never_reach_the_database(backend: Backend) {
    let f = Fixture::new(backend).await;
    let registry = f.registry(&f.keys.master).await.expect("registry");
    let mut input = person(
        "Quintessa",
        "Featherstonehaugh",
        "06/05/1987",
        Some("(916) 555-0142"),
        Some("1234 Larkspur Lane"),
    );
    input.email = Some("quintessa.f@example.org".to_owned());

    for partner in ["pd", "county-health", "cbo-north"] {
        f.register(&registry, partner, &input).await;
    }
    f.store.close().await;

    let haystack = match backend {
        Backend::Sqlite => sqlite_bytes(&f.db.url),
        Backend::Postgres => postgres_dump(&f.db.url).await,
    };
    assert!(haystack.len() > 1000, "the search reads real data");
    for needle in KNOWN {
        assert!(
            !contains(&haystack, needle.as_bytes()),
            "{needle:?} found at rest ({backend:?})"
        );
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The SQLite database file with its WAL: everything that rests on disk.
fn sqlite_bytes(url: &str) -> Vec<u8> {
    let path = url.trim_start_matches("sqlite://");
    let mut bytes = std::fs::read(path).expect("database file");
    for suffix in ["-wal", "-journal"] {
        if let Ok(more) = std::fs::read(format!("{path}{suffix}")) {
            bytes.extend(more);
        }
    }
    bytes
}

/// Every row of every table as PostgreSQL prints it, plus the raw bytes of every
/// `bytea` value (which the text form shows only as hex).
async fn postgres_dump(url: &str) -> Vec<u8> {
    use sqlx::{Connection as _, Row as _};
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let columns: Vec<(String, String, String)> = sqlx::query(
        "SELECT table_name::text, column_name::text, data_type::text \
         FROM information_schema.columns WHERE table_schema = 'public'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("columns")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    let mut dump = Vec::new();
    let mut tables: Vec<&String> = columns.iter().map(|(t, _, _)| t).collect();
    tables.dedup();
    for table in tables {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT t::text FROM \"{table}\" t"
        )))
        .fetch_all(&mut conn)
        .await
        .expect("rows");
        for row in rows {
            dump.extend(row.get::<String, _>(0).into_bytes());
            dump.push(b'\n');
        }
    }
    for (table, column, _) in columns.iter().filter(|(_, _, kind)| kind == "bytea") {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT \"{column}\" FROM \"{table}\""
        )))
        .fetch_all(&mut conn)
        .await
        .expect("bytea rows");
        for row in rows {
            dump.extend(row.get::<Vec<u8>, _>(0));
            dump.push(b'\n');
        }
    }
    dump
}

/// A property over generated populations: for each seed, every identity keeps
/// its subject through a rotation that is interrupted and resumed.
async fn rotation_keeps_every_link_and_resumes_after_interruption(backend: Backend) {
    for seed in [7, 19, 2026] {
        rotation_keeps_every_link_for(backend, seed).await;
    }
}

async fn rotation_keeps_every_link_for(backend: Backend, seed: u64) {
    let f = Fixture::new(backend).await;
    let registry = f.registry(&f.keys.master).await.expect("registry");
    let people = crosswalk::linkage::synth::people(seed, 45);
    let mut before = Vec::new();
    for (i, p) in people.iter().enumerate() {
        before.push(f.register(&registry, "pd", p).await);
        // Every third person comes back through health with a corrupted record.
        if i % 3 == 0 {
            let variant = crosswalk::linkage::synth::corrupt_one_field(p, seed + i as u64);
            before.push(f.register(&registry, "county-health", &variant).await);
        }
    }
    let links_before = subject_map(&f).await;
    let clusters_before = cluster_map(&f).await;
    let subjects: std::collections::BTreeSet<&String> =
        links_before.iter().map(|(_, s)| s).collect();
    let variants = links_before.len() - people.len();
    let linked = links_before.len() - subjects.len();
    assert!(
        linked * 10 >= variants * 9,
        "most corrupted variants linked before rotation ({linked} of {variants}), so there are links to keep"
    );
    let new_master = MasterSecret::from_bytes([0x5a; 32]);

    // Interrupted after one batch: the gateway refuses to serve half-rotated.
    let partial = f
        .rotate_to(
            &new_master,
            RotationOptions {
                batch_size: 10,
                max_batches: Some(1),
            },
        )
        .await
        .expect("first slice");
    assert!(!partial.complete);
    assert!(matches!(
        f.registry(&f.keys.master).await,
        Err(RegistryError::RotationInProgress)
    ));

    let done = f
        .rotate_to(&new_master, RotationOptions::default())
        .await
        .expect("resume");
    assert!(done.complete);
    assert_eq!(done.key_version, 2);
    assert_eq!(
        subject_map(&f).await,
        links_before,
        "every identity kept its subject"
    );
    assert_eq!(
        cluster_map(&f).await,
        clusters_before,
        "every identity kept its partner clusters"
    );
    assert_eq!(
        token_versions(&f).await,
        vec![2],
        "only tokens under the new key remain"
    );

    // The old secret is now refused; under the new one a fresh variant of a
    // person from before rotation still links to them.
    assert!(
        f.store
            .check_master_key(&f.keys.master.key_check())
            .await
            .is_err()
    );
    let rotated = f
        .registry(&new_master)
        .await
        .expect("registry under the new key");
    // The same person as typed by someone else: other case and spacing.
    let mut retyped = people[4].clone();
    retyped.given_name = retyped
        .given_name
        .map(|n| format!("  {}  ", n.to_uppercase()));
    retyped.surname = retyped.surname.map(|n| n.to_lowercase());
    let again = f.register(&rotated, "cbo-north", &retyped).await;
    let person_four = &before[subject_index(4)];
    assert_eq!(again.subject_id, person_four.subject_id);
    // And police sending them again joins police's own cluster of them.
    let again_by_police = f.register(&rotated, "pd", &retyped).await;
    let (_, pd_cluster, _) = &cluster_map(&f).await[&person_four.identity_id];
    assert_eq!(Some(&again_by_police.cluster_id), pd_cluster.as_ref());

    // Re-running is harmless.
    let rerun = f
        .rotate_to(&new_master, RotationOptions::default())
        .await
        .expect("rerun");
    assert!(rerun.already_done);
}

/// Index in the registration list of `people[n]`'s first record: every person
/// before it has one record, and every third one a second.
fn subject_index(n: usize) -> usize {
    (0..n).map(|i| if i % 3 == 0 { 2 } else { 1 }).sum()
}

/// The distinct key versions of the stored linkage tokens.
async fn token_versions(f: &Fixture) -> Vec<i64> {
    use sqlx::Row as _;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&f.db.url).await.expect("connect");
    sqlx::query("SELECT DISTINCT key_version FROM linkage_tokens ORDER BY key_version")
        .fetch_all(&pool)
        .await
        .expect("versions")
        .iter()
        .map(|r| r.get::<i64, _>(0))
        .collect()
}

/// Each identity's holding: (its submitter, the submitter's cluster of it, the
/// holding CBO's cluster of it).
async fn cluster_map(
    f: &Fixture,
) -> std::collections::BTreeMap<String, (String, Option<String>, Option<String>)> {
    let mut tx = f.store.begin().await.expect("begin");
    crosswalk::store::subjects::clusters::holdings(&mut tx)
        .await
        .expect("holdings")
        .into_iter()
        .map(|h| {
            let clusters = (h.source_partner, h.cluster_id, h.cbo_cluster_id);
            (h.identity_id, clusters)
        })
        .collect()
}

async fn subject_map(f: &Fixture) -> Vec<(String, String)> {
    let mut tx = f.store.begin().await.expect("begin");
    crosswalk::store::subjects::identity_subjects(&mut tx)
        .await
        .expect("map")
}
