//! `crosswalk link LEFT.csv RIGHT.csv`: offline linkage of two CSV files, for
//! back-filling historical data or measuring linkage on an operator's own data.
//!
//! Each row is read through the column mapping into an
//! [`IdentityInput`], normalized with the same rules as a live submission
//! ([`normalize_tolerant`]), reduced to a keyed profile and linked one to one
//! by the probabilistic linker ([`probabilistic`](super::probabilistic)). The
//! output is CSV `left_id,right_id,weight,decision`, one line per pair:
//! `match` (linked) or `review` (a person should decide), strongest first;
//! `weight` is the match weight in bits.
//!
//! Bad input:
//! - a mapped column (or the id column) missing from a header, a row that
//!   cannot be read (ragged, not UTF-8), an empty id or an id used twice stops
//!   the run before anything is written, with an error naming the file, the
//!   row and the column (never a value);
//! - a value that does not normalize (an impossible date, a ZIP that is not
//!   one, a malformed phone) costs that value, not the row: it is left out of
//!   the exact tokens, its digits or words are kept for the fuzzy comparison
//!   ([`normalize_tolerant`]), and it is counted per field on the diagnostics
//!   stream (file, column, field, how many, the first rows — never a value);
//! - an unlinkable row (too few usable fields once bad values are dropped) is
//!   skipped and counted.
//!
//! Empty cells are absent fields. Cells and headers are trimmed.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rayon::prelude::*;

use super::keys::LinkageKeys;
use super::probabilistic::{self, Decision, Profile, ProfileKeys, Scored};
use crate::normalize::{IdentityInput, NormalizeOptions, normalize_tolerant};

/// An identifier field a CSV column can be mapped to: the referral subject's
/// field names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    GivenName,
    Surname,
    Dob,
    Sex,
    Street,
    City,
    State,
    Zip,
    Phone,
    Email,
}

impl Field {
    pub const ALL: [Self; 10] = [
        Self::GivenName,
        Self::Surname,
        Self::Dob,
        Self::Sex,
        Self::Street,
        Self::City,
        Self::State,
        Self::Zip,
        Self::Phone,
        Self::Email,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::GivenName => "given_name",
            Self::Surname => "surname",
            Self::Dob => "dob",
            Self::Sex => "sex",
            Self::Street => "street",
            Self::City => "city",
            Self::State => "state",
            Self::Zip => "zip",
            Self::Phone => "phone",
            Self::Email => "email",
        }
    }

    fn slot(self, input: &mut IdentityInput) -> &mut Option<String> {
        match self {
            Self::GivenName => &mut input.given_name,
            Self::Surname => &mut input.surname,
            Self::Dob => &mut input.dob,
            Self::Sex => &mut input.sex,
            Self::Street => &mut input.street,
            Self::City => &mut input.city,
            Self::State => &mut input.state,
            Self::Zip => &mut input.zip,
            Self::Phone => &mut input.phone,
            Self::Email => &mut input.email,
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Field {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|f| f.name()).collect();
                format!("unknown field {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// `FIELD=COLUMN`: the column of a CSV file that holds a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMapping {
    pub field: Field,
    pub column: String,
}

impl FromStr for FieldMapping {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (field, column) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not FIELD=COLUMN"))?;
        let column = column.trim();
        if column.is_empty() {
            return Err(format!("{s:?} names no column"));
        }
        Ok(Self {
            field: field.trim().parse()?,
            column: column.to_owned(),
        })
    }
}

/// What to link.
#[derive(Debug, Clone, Copy)]
pub struct LinkFiles<'a> {
    pub left: &'a Path,
    pub right: &'a Path,
    /// Carried through to the output, never hashed.
    pub id_column: &'a str,
    pub map: &'a [FieldMapping],
}

/// Why a run stopped. Names files, rows, columns and fields; never a cell's value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    #[error("{}: {source}", file.display())]
    Open { file: PathBuf, source: io::Error },
    #[error("{field} is mapped more than once")]
    DuplicateField { field: Field },
    #[error("{}: the header has no column {column:?} (for {what})", file.display())]
    MissingColumn {
        file: PathBuf,
        column: String,
        what: String,
    },
    #[error("{}: row {row}{}: {problem}", file.display(), at_column(.column.as_deref()))]
    BadRow {
        file: PathBuf,
        /// 1-based data row; 0 is the header.
        row: u64,
        column: Option<String>,
        problem: String,
    },
    #[error("writing the output: {0}")]
    Output(#[source] io::Error),
}

fn at_column(column: Option<&str>) -> String {
    column
        .map(|c| format!(", column {c:?}"))
        .unwrap_or_default()
}

/// Counts for one side of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SideSummary {
    pub rows: usize,
    /// Values dropped because they did not normalize, per field (in
    /// [`Field::ALL`] order, fields with none left out). Their rows were kept.
    pub dropped: Vec<(Field, usize)>,
    /// Rows skipped because their identity has too few usable fields.
    pub unlinkable: usize,
}

impl fmt::Display for SideSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rows, {} unlinkable", self.rows, self.unlinkable)?;
        if !self.dropped.is_empty() {
            let fields: Vec<String> = self
                .dropped
                .iter()
                .map(|(field, n)| format!("{field} {n}"))
                .collect();
            write!(f, ", values dropped: {}", fields.join(", "))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkSummary {
    pub left: SideSummary,
    pub right: SideSummary,
    /// Pairs linked (`match`).
    pub links: usize,
    /// Pairs written for review.
    pub review: usize,
    /// Candidate pairs compared (after blocking).
    pub candidates: usize,
    /// Where the weights' `m` came from.
    pub weights: probabilistic::weights::Source,
}

/// `crosswalk link` as the CLI runs it: keys from the configuration, today
/// from the system clock, links to stdout, skipped rows and a summary to stderr.
pub fn run_cli(config: &crate::config::Config, request: &LinkFiles<'_>) -> anyhow::Result<()> {
    use crate::clock::Clock as _;
    let master = crate::secrets::GatewayKeys::load(config)?.master;
    // Fingerprints made here never leave the run, so any key version will do.
    let keys = LinkageKeys::derive(&master, 1);
    let today = crate::clock::SystemClock.now().date_naive();
    let options = NormalizeOptions::new(config.linkage.phone_region(), today);
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let summary = link_files(request, &keys, &options, &mut out, &mut io::stderr())?;
    out.flush()?;
    eprintln!(
        "crosswalk link: {} pairs linked, {} for review ({} candidate pairs compared, weights {}); left: {}; right: {}",
        summary.links,
        summary.review,
        summary.candidates,
        match summary.weights {
            probabilistic::weights::Source::Estimated => "estimated from these files",
            probabilistic::weights::Source::Calibrated =>
                "calibrated (these files' estimate did not separate people from households)",
            probabilistic::weights::Source::TooFewPairs =>
                "calibrated (too few pairs to estimate from)",
        },
        summary.left,
        summary.right
    );
    Ok(())
}

/// Left rows profiled and scored at a time after the first chunk (which is
/// [`probabilistic::SAMPLE_ROWS`] long and sets the weights).
const CHUNK_ROWS: usize = 50_000;

/// Runs `crosswalk link`: writes `left_id,right_id,weight,decision` lines to
/// `out`, and the values dropped and rows skipped to `diagnostics`.
///
/// Both files' headers are checked first. The right file is read in chunks
/// into profiles and a block index; the left file is then streamed in chunks,
/// each profiled, scored against the index and dropped, so memory is the
/// right side (about 0.5 KB a row), its index and one chunk, however long
/// the left file is. Nothing is written until both files have been read
/// without error (a bad row anywhere stops the run with no output).
pub fn link_files(
    request: &LinkFiles<'_>,
    keys: &LinkageKeys,
    options: &NormalizeOptions,
    out: &mut dyn Write,
    diagnostics: &mut dyn Write,
) -> Result<LinkSummary, LinkError> {
    for (i, m) in request.map.iter().enumerate() {
        if request.map[..i].iter().any(|other| other.field == m.field) {
            return Err(LinkError::DuplicateField { field: m.field });
        }
    }
    let mut left_rows = RowReader::open(request.left, request.id_column, request.map)?;
    let mut right_rows = RowReader::open(request.right, request.id_column, request.map)?;
    let keys = ProfileKeys::new(keys);

    let mut right = Side::default();
    let mut right_profiles = Vec::new();
    loop {
        let chunk = right_rows.next_chunk(CHUNK_ROWS)?;
        if chunk.is_empty() {
            break;
        }
        right_profiles.extend(right.add(chunk, &keys, *options));
    }
    drop(right_rows);
    let index = probabilistic::BlockIndex::build(&right_profiles);
    for profile in &mut right_profiles {
        profile.drop_blocks();
    }
    let mut linker = probabilistic::StreamLinker::new(&right_profiles, index);
    let mut left = Side::default();
    let mut size = probabilistic::SAMPLE_ROWS;
    loop {
        let chunk = left_rows.next_chunk(size)?;
        if chunk.is_empty() {
            break;
        }
        let profiles = left.add(chunk, &keys, *options);
        linker.add(&profiles);
        size = CHUNK_ROWS;
    }
    drop(left_rows);
    left.report(request, request.left, diagnostics);
    right.report(request, request.right, diagnostics);

    let outcome = linker.finish();
    write_links(&outcome.pairs, &left.ids, &right.ids, out).map_err(LinkError::Output)?;
    let links = outcome
        .pairs
        .iter()
        .filter(|p| p.decision == Decision::Match)
        .count();
    Ok(LinkSummary {
        left: left.summary,
        right: right.summary,
        links,
        review: outcome.pairs.len() - links,
        candidates: outcome.candidates,
        weights: outcome.weights.source,
    })
}

/// One file's rows as they are profiled: the ids of the linkable ones, and
/// the counts (with the first rows) of the values dropped per field.
#[derive(Default)]
struct Side {
    ids: Vec<String>,
    summary: SideSummary,
    /// Per field: how many values were dropped, and the first rows.
    dropped: Vec<(Field, usize, Vec<u64>)>,
}

/// A row as read: its 1-based number, its id, and its identity as typed.
struct RawRow {
    row: u64,
    id: String,
    input: IdentityInput,
}

/// Rows named per field in the diagnostics before "and N more".
const EXAMPLE_ROWS: usize = 5;

impl Side {
    /// Normalizes and profiles a chunk of rows (in parallel); returns the
    /// profiles of the linkable ones, whose ids it keeps, and counts the
    /// values dropped and the rows skipped.
    fn add(
        &mut self,
        rows: Vec<RawRow>,
        keys: &ProfileKeys,
        options: NormalizeOptions,
    ) -> Vec<Profile> {
        let results: Vec<_> = rows
            .par_iter()
            .map(|row| {
                let tolerant = normalize_tolerant(&row.input, &options);
                let dropped: Vec<&'static str> = tolerant.dropped.iter().map(|p| p.field).collect();
                let profile = probabilistic::profile(&tolerant.identity, &tolerant.remnants, keys);
                (profile, dropped)
            })
            .collect();
        self.summary.rows += rows.len();
        let mut profiles = Vec::with_capacity(rows.len());
        for (row, (profile, fields)) in rows.into_iter().zip(results) {
            for name in fields {
                let Some(field) = Field::ALL.into_iter().find(|f| f.name() == name) else {
                    continue;
                };
                match self.dropped.iter_mut().find(|(f, ..)| *f == field) {
                    Some((_, n, examples)) => {
                        *n += 1;
                        if examples.len() < EXAMPLE_ROWS {
                            examples.push(row.row);
                        }
                    }
                    None => self.dropped.push((field, 1, vec![row.row])),
                }
            }
            if is_linkable(&profile) {
                self.ids.push(row.id);
                profiles.push(profile);
            } else {
                self.summary.unlinkable += 1;
            }
        }
        profiles
    }

    /// Writes what was dropped and skipped (row numbers and counts, never a
    /// value) and fills the summary's per-field counts.
    fn report(&mut self, request: &LinkFiles<'_>, path: &Path, diagnostics: &mut dyn Write) {
        self.dropped
            .sort_by_key(|(field, ..)| Field::ALL.iter().position(|f| f == field));
        for (field, n, examples) in &self.dropped {
            let column = request
                .map
                .iter()
                .find(|m| m.field == *field)
                .map_or("-", |m| m.column.as_str());
            let rows: Vec<String> = examples.iter().map(u64::to_string).collect();
            let more = n.saturating_sub(examples.len());
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            let _ = writeln!(
                diagnostics,
                "crosswalk link: {}: column {column:?} ({field}): {n} values do not normalize and were \
                 dropped, the rows kept (rows {}{more})",
                path.display(),
                rows.join(", "),
            );
        }
        self.summary.dropped = self.dropped.iter().map(|(f, n, _)| (*f, *n)).collect();
        if self.summary.unlinkable > 0 {
            let _ = writeln!(
                diagnostics,
                "crosswalk link: {}: {} rows skipped as unlinkable (too few usable fields)",
                path.display(),
                self.summary.unlinkable
            );
        }
    }
}

/// A CSV file read a chunk of rows at a time, its header checked on opening.
struct RowReader<'a> {
    path: &'a Path,
    id_column: &'a str,
    reader: csv::Reader<BufReader<File>>,
    headers: csv::StringRecord,
    id_index: usize,
    columns: Vec<(Field, usize)>,
    /// Each id's first row: an id twice would make its links ambiguous.
    seen: std::collections::HashMap<String, u64>,
    row: u64,
}

impl<'a> RowReader<'a> {
    fn open(path: &'a Path, id_column: &'a str, map: &[FieldMapping]) -> Result<Self, LinkError> {
        let file = File::open(path).map_err(|source| LinkError::Open {
            file: path.to_owned(),
            source,
        })?;
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(BufReader::new(file));
        let headers = reader
            .headers()
            .map_err(|e| bad_row(path, 0, None, &e))?
            .clone();
        let find = |column: &str, what: String| {
            headers
                .iter()
                .position(|h| h == column)
                .ok_or_else(|| LinkError::MissingColumn {
                    file: path.to_owned(),
                    column: column.to_owned(),
                    what,
                })
        };
        let id_index = find(id_column, "--id-column".to_owned())?;
        let columns: Vec<(Field, usize)> = map
            .iter()
            .map(|m| Ok((m.field, find(&m.column, m.field.name().to_owned())?)))
            .collect::<Result<_, LinkError>>()?;
        Ok(Self {
            path,
            id_column,
            reader,
            headers,
            id_index,
            columns,
            seen: std::collections::HashMap::new(),
            row: 0,
        })
    }

    /// Up to `max` more rows; none at the end of the file.
    fn next_chunk(&mut self, max: usize) -> Result<Vec<RawRow>, LinkError> {
        let mut rows = Vec::with_capacity(max.min(4096));
        let mut record = csv::StringRecord::new();
        while rows.len() < max {
            let row = self.row + 1;
            match self.reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => return Err(bad_row(self.path, row, Some(&self.headers), &e)),
            }
            self.row = row;
            let cell = |i: usize| record.get(i).filter(|v| !v.is_empty());
            let id = cell(self.id_index).ok_or_else(|| LinkError::BadRow {
                file: self.path.to_owned(),
                row,
                column: Some(self.id_column.to_owned()),
                problem: "the id is empty".to_owned(),
            })?;
            if let Some(first) = self.seen.insert(id.to_owned(), row) {
                // The id is not quoted: it may be a record number worth
                // keeping out of logs.
                return Err(LinkError::BadRow {
                    file: self.path.to_owned(),
                    row,
                    column: Some(self.id_column.to_owned()),
                    problem: format!("the id is the same as row {first}'s; ids must be unique"),
                });
            }
            let mut input = IdentityInput::default();
            for &(field, i) in &self.columns {
                *field.slot(&mut input) = cell(i).map(str::to_owned);
            }
            rows.push(RawRow {
                row,
                id: id.to_owned(),
                input,
            });
        }
        Ok(rows)
    }
}

/// Describes a CSV error without quoting the data.
fn bad_row(
    path: &Path,
    row: u64,
    headers: Option<&csv::StringRecord>,
    e: &csv::Error,
) -> LinkError {
    let (column, problem) = match e.kind() {
        csv::ErrorKind::Utf8 { err, .. } => (
            headers.and_then(|h| h.get(err.field())).map(str::to_owned),
            "not valid UTF-8".to_owned(),
        ),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => (
            None,
            format!("{len} fields where the header has {expected_len}"),
        ),
        csv::ErrorKind::Io(io) => (None, format!("read error: {}", io.kind())),
        _ => (None, "cannot be read as CSV".to_owned()),
    };
    LinkError::BadRow {
        file: path.to_owned(),
        row,
        column,
        problem,
    }
}

/// A row is linked only with a name and at least two more fields: "Jose"
/// alone, or "Jose" with a city, is not a person to link.
fn is_linkable(profile: &Profile) -> bool {
    use probabilistic::CField;
    (profile.has(CField::Given) || profile.has(CField::Surname)) && profile.present() >= 3
}

fn write_links(
    links: &[Scored],
    left: &[String],
    right: &[String],
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(["left_id", "right_id", "weight", "decision"])?;
    for link in links {
        writer.write_record([
            left[link.left].as_str(),
            right[link.right].as_str(),
            &format!("{:.2}", link.weight),
            link.decision.as_str(),
        ])?;
    }
    writer.flush()
}
