//! Building one export, from the database to the encrypted file: the first
//! pass (quasi-identifiers), the study's plan (stored, or made now), then the
//! tables streamed through the columns the policy and the plan admit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufWriter, Write as _};
use std::path::Path;

use chrono::{DateTime, NaiveDate, SecondsFormat};

use super::container::{Hashing, ZipStream};
use super::hierarchy::{self, Interner, QiValues};
use super::plan::{self, Entry, People, Population, StudyPlan};
use super::request::Job;
use super::study::{QuasiIdentifier, StudyConfig, StudyMode};
use super::tables::{self, Cell, Column, Derivation, Sink, Table};
use super::{DAY_MICROS, ExportError, Exports, Manifest, PlanInfo, Requesting};
use crate::audit::Released;
use crate::config::PartnerKind;
use crate::domain::ids::SubjectRef;
use crate::normalize::{
    Sex, normalize_city, normalize_dob, normalize_sex, normalize_state, normalize_zip,
};
use crate::policy::{Purpose, StudyFacts};
use crate::store::export_rows::Window;
use crate::store::export_rows::{
    ExportCase, ExportOutcome, ExportReader, ExportReferral, ReferralIdentity,
};

/// What a finished build hands to [`Exports::record_ready`].
pub(super) struct Built {
    pub(super) path: std::path::PathBuf,
    pub(super) manifest: Manifest,
    pub(super) subjects: Vec<String>,
    pub(super) fields: Vec<(String, Released)>,
    pub(super) reason: String,
    /// The plan used; `planned_by` is this export when it made it.
    pub(super) plan: StudyPlan,
}

pub(super) fn io_err(e: impl std::fmt::Display) -> ExportError {
    ExportError::Build(e.to_string())
}

/// First-pass state: the referrals' quasi-identifiers and their people.
struct FirstPass {
    entries: Vec<Entry>,
    people: People,
    states: Interner,
    cities: Interner,
    districts: Interner,
}

fn id_check(id: &str) -> u64 {
    let h = blake3::hash(id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

type Plain = Hashing<age::stream::StreamWriter<Hashing<BufWriter<std::fs::File>>>>;

/// The day (UTC) of a timestamp in unix microseconds.
fn day_of(micros: i64) -> NaiveDate {
    DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .date_naive()
}

impl Exports {
    /// The referrals of `window`: each identity unsealed only to compute its
    /// quasi-identifiers, ages on `reference_date`.
    async fn first_pass(
        &self,
        reader: &ExportReader,
        window: Window,
        reference_date: NaiveDate,
    ) -> Result<FirstPass, ExportError> {
        let mut pass = FirstPass {
            entries: Vec::new(),
            people: People::default(),
            states: Interner::default(),
            cities: Interner::default(),
            districts: Interner::default(),
        };
        let today = self.clock.now().date_naive();
        let mut rows = reader.rows_over::<ReferralIdentity>(window);
        while let Some(row) = rows.next().await? {
            let identity =
                crate::subjects::unseal_identity(&self.vault, &row.identity_id, &row.sealed)
                    .await
                    .map_err(io_err)?;
            let dob = identity
                .dob
                .as_deref()
                .and_then(|d| normalize_dob(d, today).ok());
            let zip = identity
                .zip
                .as_deref()
                .and_then(|z| normalize_zip(z).ok())
                .and_then(|z| z.get(..5).and_then(|z| z.parse::<u32>().ok()));
            let state = identity
                .state
                .as_deref()
                .and_then(|s| normalize_state(s).ok());
            let city = identity
                .city
                .as_deref()
                .and_then(|c| normalize_city(c).ok());
            let values = QiValues {
                age: dob
                    .and_then(|d| hierarchy::age_on(d, reference_date))
                    .map_or(0, |a| a.min(120) + 1),
                sex: match identity.sex.as_deref().and_then(|s| normalize_sex(s).ok()) {
                    Some(Sex::Female) => 1,
                    Some(Sex::Male) => 2,
                    Some(Sex::Other) => 3,
                    Some(Sex::Unknown) => 4,
                    None => 0,
                },
                zip: zip.map_or(0, |z| z + 1),
                state: pass
                    .states
                    .code(state.as_deref().map(str::to_uppercase).as_deref()),
                city: pass.cities.code(city.as_deref()),
                district: pass.districts.code(Some(&row.district)),
                contact_day: hierarchy::day_code(day_of(row.contact_at)),
            };
            pass.entries.push(Entry {
                check: id_check(&row.referral_id),
                values,
                person: pass.people.number(&row.subject_id),
            });
        }
        Ok(pass)
    }

    /// The study's plan and, under it, the class sizes of the export's own
    /// referrals; `stored` is the study's plan if it has one, otherwise one
    /// is made from every referral recorded up to the cutoff. Leaves only the
    /// window's referrals in `pass`.
    async fn plan(
        &self,
        job: &Job,
        study: &StudyConfig,
        reader: &ExportReader,
        stored: Option<StudyPlan>,
    ) -> Result<(StudyPlan, FirstPass, plan::Sizes), ExportError> {
        let declared = &study.quasi_identifiers;
        let mode = study.mode;
        if let Some(plan) = stored {
            let pass = self
                .first_pass(reader, job.window(), plan.reference_date)
                .await?;
            let sizes =
                Population::new(&pass.entries, pass.people.len()).sizes(plan.node, declared, mode);
            return Ok((plan, pass, sizes));
        }
        let reference_date = day_of(job.window.cutoff);
        let everything = Window {
            from: i64::MIN,
            to: i64::MAX,
            cutoff: job.window.cutoff,
        };
        let mut pass = self.first_pass(reader, everything, reference_date).await?;
        let (node, sizes) = plan::search(
            &Population::new(&pass.entries, pass.people.len()),
            declared,
            mode,
            study.k,
            study.max_suppression_percent,
        );
        let recorded = pass.entries.len();
        let days = hierarchy::day_code(job.from)..=hierarchy::day_code(job.to);
        pass.entries
            .retain(|e| days.contains(&e.values.contact_day));
        let sizes = if pass.entries.len() == recorded {
            sizes
        } else {
            Population::new(&pass.entries, pass.people.len()).sizes(node, declared, mode)
        };
        tracing::info!(
            export = %job.id,
            study = %job.study_id,
            referrals = recorded,
            "the study's plan is made over its referrals so far"
        );
        let plan = StudyPlan {
            node,
            reference_date,
            planned_by: job.id.clone(),
            planned_at: self.clock.now().timestamp_micros(),
        };
        Ok((plan, pass, sizes))
    }

    #[expect(
        clippy::too_many_lines,
        reason = "one streaming pipeline read top to bottom; each table's writer is a block"
    )]
    pub(super) async fn build(
        &self,
        job: &Job,
        path: &Path,
        stored: Option<StudyPlan>,
    ) -> Result<Built, ExportError> {
        let study = self
            .study(&job.study_id)
            .ok_or_else(|| ExportError::Build("the study is no longer configured".into()))?
            .clone();
        let recipient: age::x25519::Recipient = self
            .config
            .partners
            .get(&study.evaluator)
            .and_then(|p| p.age_recipient.as_deref())
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| ExportError::Build("the evaluator has no age recipient".into()))?;
        let who_purpose: Purpose = job.purpose.parse().map_err(|_| io_err("bad purpose"))?;
        let who = Requesting {
            partner: &job.evaluator,
            kind: PartnerKind::Evaluator,
            purpose: &who_purpose,
        };
        let mode = study.mode;
        let pseudonyms = self.pseudonyms.study(&job.study_id);
        let declared = study.quasi_identifiers.clone();
        let facts = study_facts(&study, day_of(job.window.cutoff));
        let part2_research = facts.part2_research;

        let rows_in = ExportReader::open(&self.store, job.window()).await?;
        let (plan, pass, sizes) = self.plan(job, &study, &rows_in, stored).await?;
        let rows_suppressed = plan::suppressed_rows(&sizes, study.k);
        tracing::info!(
            export = %job.id,
            referrals = pass.entries.len(),
            classes = sizes.len(),
            suppressed = rows_suppressed,
            "export plan"
        );
        let level = |qi: QuasiIdentifier| plan.level(qi);

        // The chain to disk.
        std::fs::create_dir_all(self.dir()).map_err(io_err)?;
        let file = std::fs::File::create(path).map_err(io_err)?;
        let cipher = Hashing::new(BufWriter::with_capacity(256 * 1024, file));
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .map_err(io_err)?;
        let stream = encryptor.wrap_output(cipher).map_err(io_err)?;
        let mut zip: ZipStream<Plain> = ZipStream::new(Hashing::new(stream));

        let mut decisions = HashMap::new();
        let mut dictionary = Vec::new();
        let mut released: BTreeMap<String, Released> = BTreeMap::new();
        let mut reason = String::new();
        let mut policy_version = String::new();
        for table in Table::ALL {
            let released_view = self.decide(&who, table, false, Some(facts));
            let part2 = self.decide(&who, table, true, Some(facts));
            reason.clone_from(&released_view.reason);
            policy_version = released_view.policy_version.to_string();
            let mut columns: Vec<Column> = tables::candidate_columns(table, mode, &declared)
                .into_iter()
                .filter(|c| tables::admits(&released_view, c.field))
                .collect();
            for c in &mut columns {
                c.generalization = describe_generalization(c, mode, &level);
            }
            if job.tables.contains(&table) {
                for c in &columns {
                    released.insert(
                        format!("{}.{}", table.resource().as_str(), c.field),
                        match c.derivation {
                            Derivation::Released => Released::Released,
                            Derivation::Pseudonymized => Released::Pseudonymized,
                            Derivation::Generalized => Released::Generalized,
                        },
                    );
                }
            }
            // A 42 CFR Part 2 record goes out whole or not at all: only where
            // the study is configured for Part 2 research and the policy's
            // decision for such a record admits every column the table has.
            // Anywhere else it is left out, uncounted: a row with blanks would
            // mark its person as a Part 2 patient.
            let part2_whole = part2_research
                && part2.allows_records()
                && columns.iter().all(|c| tables::admits(&part2, c.field));
            decisions.insert(table, (part2, part2_whole, columns));
        }

        let mut rows_written: BTreeMap<String, u64> = BTreeMap::new();
        let mut kept = vec![false; pass.people.len()];
        let mut subjects: Vec<String> = Vec::new();
        let mut suppressed_referrals: HashSet<String> = HashSet::new();
        let mut rows_generalized = 0u64;
        let mut files = Vec::new();

        // Referrals (always read: they decide who is in the export).
        {
            let (_, _, columns) = &decisions[&Table::Referrals];
            let write = job.tables.contains(&Table::Referrals);
            let name = format!("referrals.{}", job.format.extension());
            let mut sink = if write {
                files.push(name.clone());
                dictionary.push((name.clone(), columns.clone()));
                Some(Sink::open(&mut zip, &name, job.format, columns).map_err(io_err)?)
            } else {
                None
            };
            let mut written = 0u64;
            let mut rows = rows_in.rows::<ExportReferral>();
            let mut index = 0usize;
            while let Some(row) = rows.next().await? {
                let Some(entry) = pass.entries.get(index) else {
                    return Err(io_err("the referrals changed between the two passes"));
                };
                index += 1;
                if entry.check != id_check(&row.id) {
                    return Err(io_err("the referrals changed between the two passes"));
                }
                let values = &entry.values;
                let key = hierarchy::generalized_key(values, &plan.node, &declared, mode);
                if sizes.get(&key).map_or(0, |s| s.people) < study.k {
                    suppressed_referrals.insert(row.id);
                    continue;
                }
                if declared.iter().any(|qi| {
                    let v = values.get(*qi);
                    hierarchy::generalize(*qi, mode, v, level(*qi))
                        != hierarchy::generalize(*qi, mode, v, 0)
                }) {
                    rows_generalized += 1;
                }
                if let Some(seen) = kept.get_mut(entry.person as usize)
                    && !*seen
                {
                    *seen = true;
                    subjects.push(row.subject_id.clone());
                }
                let Some(sink) = sink.as_mut() else { continue };
                let render = |qi: QuasiIdentifier| {
                    let interner = match qi {
                        QuasiIdentifier::City => &pass.cities,
                        QuasiIdentifier::District => &pass.districts,
                        _ => &pass.states,
                    };
                    let l = level(qi);
                    hierarchy::render(
                        qi,
                        mode,
                        hierarchy::generalize(qi, mode, values.get(qi), l),
                        l,
                        interner,
                    )
                };
                let resources: Vec<String> =
                    serde_json::from_str(&row.resources).unwrap_or_default();
                let cells: Vec<Cell<'_>> = columns
                    .iter()
                    .map(|c| match c.name {
                        "referral" => Cell::Owned(
                            pseudonyms.record("referral", row.id.as_bytes()).to_string(),
                        ),
                        "subject" => Cell::Owned(
                            pseudonyms
                                .subject(SubjectRef::of(&row.subject_id))
                                .to_string(),
                        ),
                        "contact_year" | "contact_date" => {
                            let text = render(QuasiIdentifier::ContactDate);
                            match text.parse::<i64>() {
                                Ok(n) if mode == StudyMode::SafeHarbor => Cell::Int(n),
                                _ => Cell::Owned(text),
                            }
                        }
                        "age" => Cell::Owned(render(QuasiIdentifier::Age)),
                        "sex" => Cell::Owned(render(QuasiIdentifier::Sex)),
                        "zip" => Cell::Owned(render(QuasiIdentifier::Zip)),
                        "state" => Cell::Owned(render(QuasiIdentifier::State)),
                        "city" => Cell::Owned(render(QuasiIdentifier::City)),
                        "district" => Cell::Owned(render(QuasiIdentifier::District)),
                        "status" => Cell::Text(&row.status),
                        "workflow_state" => Cell::Text(&row.workflow_state),
                        "resources" => Cell::Owned(resources.join(";")),
                        "follow_up_by" => {
                            row.follow_up_by.as_deref().map_or(Cell::Null, Cell::Text)
                        }
                        _ => Cell::Null,
                    })
                    .collect();
                sink.row(&cells).map_err(io_err)?;
                written += 1;
            }
            drop(rows);
            if index != pass.entries.len() {
                return Err(io_err("the referrals changed between the two passes"));
            }
            if let Some(sink) = sink {
                sink.finish().map_err(io_err)?;
                rows_written.insert(Table::Referrals.as_str().to_owned(), written);
            }
        }

        // Outcomes of the referrals kept.
        let mut outcomes_suppressed = 0u64;
        if job.tables.contains(&Table::Outcomes) {
            let (_, _, columns) = &decisions[&Table::Outcomes];
            let name = format!("outcomes.{}", job.format.extension());
            files.push(name.clone());
            dictionary.push((name.clone(), columns.clone()));
            let mut sink = Sink::open(&mut zip, &name, job.format, columns).map_err(io_err)?;
            let mut written = 0u64;
            let mut rows = rows_in.rows::<ExportOutcome>();
            while let Some(row) = rows.next().await? {
                if suppressed_referrals.contains(&row.referral_id) {
                    outcomes_suppressed += 1;
                    continue;
                }
                let cells: Vec<Cell<'_>> = columns
                    .iter()
                    .map(|c| match c.name {
                        "outcome" => {
                            Cell::Owned(pseudonyms.record("outcome", row.id.as_bytes()).to_string())
                        }
                        "referral" => Cell::Owned(
                            pseudonyms
                                .record("referral", row.referral_id.as_bytes())
                                .to_string(),
                        ),
                        "subject" => Cell::Owned(
                            pseudonyms
                                .subject(SubjectRef::of(&row.subject_id))
                                .to_string(),
                        ),
                        "kind" => Cell::Text(&row.kind),
                        "resource" => row.resource.as_deref().map_or(Cell::Null, Cell::Text),
                        "days_from_contact" => {
                            Cell::Int((row.occurred_at - row.contact_at).div_euclid(DAY_MICROS))
                        }
                        _ => Cell::Null,
                    })
                    .collect();
                sink.row(&cells).map_err(io_err)?;
                written += 1;
            }
            drop(rows);
            sink.finish().map_err(io_err)?;
            rows_written.insert(Table::Outcomes.as_str().to_owned(), written);
        }

        // Case statuses of the people kept.
        let mut notices = Vec::new();
        if job.tables.contains(&Table::CaseStatus) {
            let (part2_decision, part2_whole, columns) = &decisions[&Table::CaseStatus];
            if *part2_whole {
                notices.clone_from(&part2_decision.notices);
            }
            let name = format!("case_status.{}", job.format.extension());
            files.push(name.clone());
            dictionary.push((name.clone(), columns.clone()));
            let mut sink = Sink::open(&mut zip, &name, job.format, columns).map_err(io_err)?;
            let mut written = 0u64;
            let mut rows = rows_in.rows::<ExportCase>();
            while let Some(row) = rows.next().await? {
                let in_export = pass
                    .people
                    .get(&row.subject_id)
                    .and_then(|p| kept.get(p as usize).copied())
                    .unwrap_or(false);
                if !in_export || (row.part2 && !*part2_whole) {
                    continue;
                }
                let cells: Vec<Cell<'_>> = columns
                    .iter()
                    .map(|c| match c.name {
                        "case_report" => {
                            Cell::Owned(pseudonyms.record("case", row.id.as_bytes()).to_string())
                        }
                        "subject" => Cell::Owned(
                            pseudonyms
                                .subject(SubjectRef::of(&row.subject_id))
                                .to_string(),
                        ),
                        "program" => Cell::Text(&row.program),
                        "status" => Cell::Text(&row.status),
                        "days_from_first_referral" => {
                            row.anchor_contact_at.map_or(Cell::Null, |anchor| {
                                Cell::Int((row.effective_at - anchor).div_euclid(DAY_MICROS))
                            })
                        }
                        _ => Cell::Null,
                    })
                    .collect();
                sink.row(&cells).map_err(io_err)?;
                written += 1;
            }
            drop(rows);
            sink.finish().map_err(io_err)?;
            rows_written.insert(Table::CaseStatus.as_str().to_owned(), written);
        }
        drop(rows_in);

        files.push("dictionary.csv".to_owned());
        tables::write_dictionary(&mut zip, &dictionary).map_err(io_err)?;
        let hashed = zip.finish().map_err(io_err)?;
        let (stream, plaintext_hash) = hashed.into_parts();
        let cipher = stream.finish().map_err(io_err)?;
        let (mut file, ciphertext_hash) = cipher.into_parts();
        file.flush().map_err(io_err)?;
        let file = file.into_inner().map_err(|e| io_err(e.error()))?;
        file.sync_all().map_err(io_err)?;

        let manifest = Manifest {
            export: job.id.clone(),
            study: job.study_id.clone(),
            evaluator: job.evaluator.to_string(),
            mode: mode.as_str().to_owned(),
            purpose: job.purpose.clone(),
            dua_reference: study.dua_reference.clone(),
            dua_expires: study.dua_expires.to_string(),
            part2_research,
            part2_dua_reference: study.part2_dua_reference.clone().filter(|_| part2_research),
            part2_dua_expires: study
                .part2_dua_expires
                .filter(|_| part2_research)
                .map(|d| d.to_string()),
            k: study.k,
            quasi_identifiers: declared.iter().map(|q| q.as_str().to_owned()).collect(),
            generalization: plan.levels(&study),
            plan: PlanInfo::of(&plan),
            from: job.from.to_string(),
            to: job.to.to_string(),
            format: job.format.extension().to_owned(),
            files,
            rows: rows_written,
            rows_generalized,
            rows_suppressed,
            outcomes_suppressed,
            subjects: subjects.len() as u64,
            notices,
            policy_version,
            plaintext_blake3: plaintext_hash.to_hex().to_string(),
            ciphertext_blake3: ciphertext_hash.to_hex().to_string(),
            created_at: self.clock.now().to_rfc3339_opts(SecondsFormat::Secs, true),
        };
        Ok(Built {
            path: path.to_owned(),
            manifest,
            subjects,
            fields: released.into_iter().collect(),
            reason,
            plan,
        })
    }
}

/// What the study tells the policy: Part 2 research only while its Part 2
/// agreement is in force on `day`.
pub(super) fn study_facts(study: &StudyConfig, day: NaiveDate) -> StudyFacts {
    StudyFacts {
        part2_research: study.part2_research && study.part2_dua_expires.is_some_and(|d| d >= day),
    }
}

/// The dictionary's words for what was done to a column.
fn describe_generalization(
    c: &Column,
    mode: StudyMode,
    level: &dyn Fn(QuasiIdentifier) -> u8,
) -> String {
    let qi = match c.name {
        "age" => QuasiIdentifier::Age,
        "sex" => QuasiIdentifier::Sex,
        "zip" => QuasiIdentifier::Zip,
        "state" => QuasiIdentifier::State,
        "city" => QuasiIdentifier::City,
        "district" => QuasiIdentifier::District,
        "contact_year" | "contact_date" => QuasiIdentifier::ContactDate,
        _ => {
            return match c.derivation {
                Derivation::Pseudonymized => "study pseudonym (keyed BLAKE3 of the gateway's internal id, not of any identifier)".to_owned(),
                Derivation::Generalized => "derived from dates; exact interval in whole days from a fixed anchor, the same in every export of the study".to_owned(),
                Derivation::Released => "none".to_owned(),
            };
        }
    };
    let l = level(qi);
    let lds = mode == StudyMode::LimitedDataSet;
    let words = match (qi, l) {
        (_, l) if l >= hierarchy::max_level(qi, mode) => "suppressed (*) to reach k",
        (QuasiIdentifier::Age, 0) => "whole years; over 89 as 90+",
        (QuasiIdentifier::Age, 1) => "5-year bands; 90+",
        (QuasiIdentifier::Age, _) => "10-year bands; 90+",
        (QuasiIdentifier::Zip, 0) if lds => "five-digit ZIP",
        (QuasiIdentifier::Zip, _) => "first three digits; 000 for areas of 20,000 people or fewer",
        (QuasiIdentifier::ContactDate, 0) if lds => "date",
        (QuasiIdentifier::ContactDate, 1) if lds => "month (YYYY-MM)",
        (QuasiIdentifier::ContactDate, _) => "year",
        _ => "as recorded",
    };
    format!("{words} (level {l}, the study's plan: the same in every export)")
}
