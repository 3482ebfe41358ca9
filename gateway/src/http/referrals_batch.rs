//! `POST /v1/referrals/batch`: many referrals as NDJSON in, one result line each
//! as NDJSON out, streaming both ways.
//!
//! # How it streams
//! The body is read as a stream of lines (`ndjson::LineReader`: at most
//! [`MAX_LINE_BYTES`] per line, so one line cannot make the gateway buffer without
//! bound). Lines are checked as they arrive and queued to the intake in chunks of
//! [`GROUP_LIMIT`] (each written whole in one transaction, possibly with other
//! waiting chunks, see [`crate::exchange::intake`]), or
//! fewer when the input pauses for [`FLUSH_AFTER`]; while one chunk is being
//! written the next is read and checked. The response is `200` with an NDJSON
//! stream as soon as the request is accepted, and each chunk's result lines go out
//! as soon as it is written. A task reads the body; the response stream takes the
//! chunks it hands over, in order, through a channel of [`PIPELINE_DEPTH`]. So a
//! batch holds at most one chunk being read, [`PIPELINE_DEPTH`] waiting and one
//! being answered, whatever its size.
//!
//! A client must read the response while it sends (any HTTP/2 client, or an
//! HTTP/1.1 client that reads concurrently): once the output buffers fill, the
//! gateway stops reading input until the client reads.
//!
//! # Its own limits
//! The global request body limit and request timeout (`server.*`) do not apply
//! to this route — a batch is as large as the client makes it, and takes as long
//! as it takes. Instead, the route's own policy: a line may be at most
//! [`MAX_LINE_BYTES`]; and the *idle* limit is `server.request_timeout_secs`: if
//! no input arrives for that long (a final batch-level problem line says where
//! it stopped), or the client leaves its results unread for that long, the batch
//! stops. Time the gateway spends writing is never counted against the client.
//!
//! # Result lines
//! One per input line, in input order:
//! - `{"line": 3, "referral": {"id": ..., "status": "new", "assigned_cbo": ...,
//!   "subject_pseudonym": ...}}` — created (with `"replayed": true` when the line
//!   repeats one already stored under the same `Idempotency-Key`, and
//!   `"dropped": [{"field": "subject.dob", "problem": ...}]` when an optional
//!   subject field did not normalize: unlike the single route, a batch line
//!   costs that field, not the line — nobody is there to correct a typo in a
//!   bulk load);
//! - `{"line": 4, "problem": {problem+json, with `errors[].field`}}` — this line
//!   was rejected and nothing of it stored; the others are unaffected.
//!
//! A last line without `line` is a problem with the batch as a whole (it stopped
//! early); lines after the last numbered result were not read.
//!
//! With an `Idempotency-Key` header, each line gets its own key (the batch key and
//! the line number): a batch cut off part-way can be sent again with the same key,
//! and the lines already stored answer as before.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::AppState;
use super::caller::Caller;
use super::error::ApiError;
use super::exchange::require_content_type;
use super::ndjson::{Line, LineReader};
use super::problem::{FieldError, Problem};
use super::referrals::idempotency_key;
use crate::config::PartnerKind;
use crate::domain::PartnerId;
use crate::exchange::{
    Exchange, GROUP_LIMIT, Invalid, Pending, ReferralReceipt, Submission, SubmitError,
    SubmitResult, Submitted, Tolerance,
};
use crate::policy::Purpose;

/// The longest line accepted, in bytes. A referral at every field's limit is well
/// under it.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Chunks read and queued to the intake but not yet sent back, per batch.
pub const PIPELINE_DEPTH: usize = 2;

const NDJSON: &[&str] = &[
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/jsonlines",
];

/// This route, with none of the global body-size or time limits (see the module
/// docs for its own).
pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/v1/referrals/batch", post(create_batch))
}

/// Submit many referrals as NDJSON (police only); one NDJSON result line per line.
///
/// Each line is a referral as for `POST /v1/referrals`. Results come back in input
/// order as `{"line": n, "referral": {...}}` or `{"line": n, "problem": {...}}`; a
/// bad line rejects only itself. Streams both ways: read the response while
/// sending. An `Idempotency-Key` applies line by line.
#[utoipa::path(post, path = "/v1/referrals/batch", tag = "referrals",
    security(("partner_token" = [])),
    params(
        ("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]{1,255}$", description = "Applies to each line (with its line number)"),
        ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; default CAREMGT"),
    ),
    request_body(content = crate::exchange::referral::ReferralRequest, content_type = "application/x-ndjson",
        description = "One referral JSON object per line"),
    responses(
        (status = 200, description = "One result line per input line, in order", body = BatchResultLine,
            content_type = "application/x-ndjson"),
        (status = 400, description = "Bad headers", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a police partner", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not NDJSON", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn create_batch(
    State(state): State<AppState>,
    Caller {
        partner, purpose, ..
    }: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if partner.kind != PartnerKind::Police {
        return Err(ApiError::WrongKind {
            detail: "only police partners submit referrals",
        });
    }
    let key = idempotency_key(&headers)?;
    require_content_type(&headers, NDJSON)?;
    let (chunks, queued) = mpsc::channel::<Output>(PIPELINE_DEPTH);
    let pace = Arc::new(ClientPace::default());
    let batch = Batch {
        exchange: Arc::clone(&state.exchange),
        submitter: partner.id,
        purpose,
        key,
        idle: Duration::from_secs(state.config.server.request_timeout_secs),
        chunks,
        pace: Arc::clone(&pace),
    };
    tokio::spawn(batch.run(body.into_data_stream()).in_current_span());
    // The response body pulls chunks in order and waits for each one's results:
    // a chunk's lines go out as soon as it is written, while later ones are read.
    let stream = futures_util::stream::unfold(queued, move |mut queued| {
        let pace = Arc::clone(&pace);
        async move {
            pace.pulled();
            let output = queued.recv().await?;
            let bytes = output.into_bytes().await;
            pace.handed_out();
            Some((Ok::<_, Infallible>(bytes), queued))
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

/// One result line (the schema of the response's lines).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchResultLine {
    /// The input line (1-based); absent on a batch-level problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    referral: Option<ReferralReceipt>,
    /// The line repeats one already stored under the same Idempotency-Key.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    replayed: bool,
    /// Optional subject fields that did not normalize (an impossible date of
    /// birth, a ZIP that is not one): the referral was stored without them in
    /// its linkage (the vault keeps them as sent), each named with why, never
    /// quoted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dropped: Vec<FieldError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<Problem>,
}

impl BatchResultLine {
    fn referral(
        line: u64,
        receipt: ReferralReceipt,
        replayed: bool,
        dropped: Vec<FieldError>,
    ) -> Self {
        Self {
            line: Some(line),
            referral: Some(receipt),
            replayed,
            dropped,
            problem: None,
        }
    }

    fn problem(line: Option<u64>, problem: Problem) -> Self {
        Self {
            line,
            referral: None,
            replayed: false,
            dropped: Vec::new(),
            problem: Some(problem),
        }
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        // Serializing plain structs of strings and numbers cannot fail.
        let _ = serde_json::to_writer(&mut *out, self);
        out.push(b'\n');
    }
}

/// One batch request in progress: reads, checks and queues lines, and hands
/// each chunk to the response stream.
struct Batch {
    exchange: Arc<Exchange>,
    submitter: PartnerId,
    purpose: Purpose,
    key: Option<String>,
    idle: Duration,
    chunks: mpsc::Sender<Output>,
    pace: Arc<ClientPace>,
}

/// Whether the client is taking its output. The response stream is pulled by the
/// connection only as fast as the client reads; when it has handed out a chunk
/// and is not pulled again for the idle limit, the client has stopped reading.
/// (The stream also waits while a chunk is being *written*: that is the
/// gateway's time, not the client's, and does not count.)
#[derive(Default)]
struct ClientPace {
    /// Milliseconds since `origin` when output was last handed out and not yet
    /// followed by a pull; 0 when the stream is being pulled.
    waiting_since_ms: AtomicU64,
    origin: OnceLock<Instant>,
}

impl ClientPace {
    fn now_ms(&self) -> u64 {
        let origin = *self.origin.get_or_init(Instant::now);
        u64::try_from(origin.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn pulled(&self) {
        self.waiting_since_ms.store(0, Ordering::Relaxed);
    }

    fn handed_out(&self) {
        self.waiting_since_ms
            .store(self.now_ms(), Ordering::Relaxed);
    }

    /// Whether the client has left output untaken for longer than `idle`.
    fn stalled(&self, idle: Duration) -> bool {
        let since = self.waiting_since_ms.load(Ordering::Relaxed);
        since != 0
            && self.now_ms().saturating_sub(since)
                > u64::try_from(idle.as_millis()).unwrap_or(u64::MAX)
    }
}

/// What the response stream sends next.
enum Output {
    /// A chunk of lines: their results once written.
    Chunk(Chunk),
    /// The batch stopped early: the last line, a batch-level problem.
    Stopped(Problem),
}

/// A chunk of lines: those rejected already, and those queued to the intake.
struct Chunk {
    /// Per line, in order: its number, and the subject fields it dropped, or
    /// its problem if it was rejected early.
    lines: Vec<(u64, Result<Vec<FieldError>, Problem>)>,
    /// Results for the lines without a problem, in order.
    pending: Option<Pending>,
}

/// How reading a chunk ended.
enum ChunkEnd {
    /// Full, or the input paused: there is more to read.
    More,
    /// The body ended.
    Eof,
    /// No input for the idle limit.
    Idle,
    /// The body broke off.
    Broken,
}

/// How long a partly read chunk waits for more input before it is queued, so a
/// client that sends a few lines and waits gets their results without waiting
/// for a full chunk. A client streaming steadily fills whole chunks.
const FLUSH_AFTER: Duration = Duration::from_millis(20);

impl Batch {
    async fn run(self, body: BodyDataStream) {
        let mut reader = LineReader::new(body, MAX_LINE_BYTES);
        let mut lines_read: u64 = 0;
        let detail = loop {
            let (chunk, end) = self.read_chunk(&mut reader, &mut lines_read).await;
            if !chunk.lines.is_empty() && !self.hand_over(Output::Chunk(chunk)).await {
                // The client stopped reading (or left): chunks it will not hear
                // about are dropped by the intake unwritten.
                return;
            }
            match end {
                ChunkEnd::More => {}
                ChunkEnd::Eof => return,
                ChunkEnd::Idle => {
                    break format!(
                        "no input for {}s: the batch stopped after line {lines_read}",
                        self.idle.as_secs()
                    );
                }
                ChunkEnd::Broken => {
                    break format!(
                        "the request body broke off: the batch stopped after line {lines_read}"
                    );
                }
            }
        };
        tracing::warn!(lines = lines_read, "batch stopped early: {detail}");
        let problem = Problem::new(StatusCode::REQUEST_TIMEOUT).with_detail(detail);
        self.hand_over(Output::Stopped(problem)).await;
    }

    /// Passes output to the response stream once there is room: as long as the
    /// gateway is still writing earlier chunks, or the client is reading, it
    /// waits. False when the client is gone or has not read for the idle limit.
    async fn hand_over(&self, output: Output) -> bool {
        loop {
            match tokio::time::timeout(self.idle, self.chunks.reserve()).await {
                Ok(Ok(permit)) => {
                    permit.send(output);
                    return true;
                }
                Ok(Err(_)) => return false,
                Err(_) if self.pace.stalled(self.idle) => {
                    tracing::warn!("batch stopped: the client has not read its results");
                    return false;
                }
                Err(_) => {}
            }
        }
    }

    /// Reads up to a chunk of lines, checks them and queues the good ones.
    async fn read_chunk(
        &self,
        reader: &mut LineReader,
        line_number: &mut u64,
    ) -> (Chunk, ChunkEnd) {
        let mut lines = Vec::new();
        let mut submissions = Vec::new();
        let mut end = ChunkEnd::More;
        while lines.len() < GROUP_LIMIT {
            let wait = if lines.is_empty() {
                self.idle
            } else {
                FLUSH_AFTER
            };
            // `next_line` is cancel-safe: a line is taken only when returned.
            let line = match tokio::time::timeout(wait, reader.next_line()).await {
                Err(_) if lines.is_empty() => {
                    end = ChunkEnd::Idle;
                    break;
                }
                Err(_) => break,
                Ok(Err(())) => {
                    end = ChunkEnd::Broken;
                    break;
                }
                Ok(Ok(None)) => {
                    end = ChunkEnd::Eof;
                    break;
                }
                Ok(Ok(Some(line))) => line,
            };
            *line_number += 1;
            let number = *line_number;
            match self.check_line(number, line) {
                Ok(submission) => {
                    let dropped = submission
                        .draft
                        .subject
                        .dropped
                        .iter()
                        .map(|d| FieldError {
                            field: d.field.clone(),
                            problem: d.problem.clone(),
                        })
                        .collect();
                    submissions.push(submission);
                    lines.push((number, Ok(dropped)));
                }
                Err(problem) => lines.push((number, Err(problem))),
            }
        }
        let pending = match self.exchange.enqueue(submissions).await {
            Ok(pending) => Some(pending),
            Err(e) => {
                tracing::warn!(error = %e, "batch chunk not queued");
                None
            }
        };
        (Chunk { lines, pending }, end)
    }

    fn check_line(&self, number: u64, line: Line) -> Result<Submission, Problem> {
        let text = match line {
            Line::TooLong => {
                return Err(line_problem(
                    number,
                    Invalid::field("(line)", format!("is longer than {MAX_LINE_BYTES} bytes")),
                ));
            }
            Line::Text(text) => text,
        };
        if text.iter().all(u8::is_ascii_whitespace) {
            return Err(line_problem(
                number,
                Invalid::field("(line)", "is empty; expected a referral JSON object"),
            ));
        }
        let draft = self
            .exchange
            .check_referral(&text, Tolerance::DropBadFields)
            .map_err(|e| line_problem(number, e))?;
        let claim = self.key.as_ref().map(|key| {
            self.exchange
                .line_claim(&self.submitter, key.as_bytes(), number, &text)
        });
        Ok(Submission {
            submitter: self.submitter.clone(),
            purpose: self.purpose.clone(),
            draft,
            claim,
        })
    }
}

impl Output {
    /// The NDJSON lines, once the chunk is written.
    async fn into_bytes(self) -> Bytes {
        let mut out = Vec::new();
        match self {
            Self::Stopped(problem) => BatchResultLine::problem(None, problem).write_to(&mut out),
            Self::Chunk(chunk) => chunk.write_results(&mut out).await,
        }
        Bytes::from(out)
    }
}

impl Chunk {
    async fn write_results(self, out: &mut Vec<u8>) {
        let results: Option<Vec<SubmitResult>> = match self.pending {
            Some(pending) => match pending.results().await {
                Ok(results) => Some(results),
                Err(e) => {
                    tracing::warn!(error = %e, "batch chunk not written");
                    None
                }
            },
            None => None,
        };
        let mut results = results.map(Vec::into_iter);
        out.reserve(self.lines.len() * 160);
        for (number, checked) in self.lines {
            let line = match checked {
                Err(problem) => BatchResultLine::problem(Some(number), problem),
                Ok(dropped) => match results.as_mut().and_then(Iterator::next) {
                    Some(Ok(Submitted::Created(receipt))) => {
                        BatchResultLine::referral(number, receipt, false, dropped)
                    }
                    Some(Ok(Submitted::Replayed(receipt))) => {
                        BatchResultLine::referral(number, receipt, true, dropped)
                    }
                    Some(Err(SubmitError::KeyReused)) => BatchResultLine::problem(
                        Some(number),
                        ApiError::conflict(
                            "this line's Idempotency-Key (batch key and line number) was used \
                             with a different line",
                        )
                        .into_problem(),
                    ),
                    Some(Err(SubmitError::Failed)) => BatchResultLine::problem(
                        Some(number),
                        Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
                            .with_detail("not stored; send the line again"),
                    ),
                    None => BatchResultLine::problem(
                        Some(number),
                        Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                            .with_detail("not stored; send the line again"),
                    ),
                },
            };
            line.write_to(out);
        }
    }
}

fn line_problem(number: u64, invalid: Invalid) -> Problem {
    ApiError::from(invalid)
        .into_problem()
        .with_detail(format!("line {number} was not stored; see errors"))
}
