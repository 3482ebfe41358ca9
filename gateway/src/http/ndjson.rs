//! Reading a request body as lines, for NDJSON: `\n` or `\r\n` separated, with a
//! limit per line so that one endless line cannot make the gateway buffer without
//! bound (its bytes are skipped, and it is reported as too long).

use axum::body::BodyDataStream;
use futures_util::StreamExt as _;

/// One line of input.
pub(crate) enum Line {
    Text(Vec<u8>),
    /// Longer than the limit: its bytes were skipped, not buffered.
    TooLong,
}

/// Splits a body stream into lines (`\n` or `\r\n`), holding at most one line
/// (up to its limit) and one frame in memory.
pub(crate) struct LineReader {
    stream: BodyDataStream,
    buffer: Vec<u8>,
    /// Where the next line starts in `buffer`.
    start: usize,
    /// Where to continue looking for `\n` (everything before it was searched).
    scanned: usize,
    max: usize,
    /// Skipping the rest of a line that is too long.
    skipping: bool,
    done: bool,
}

impl LineReader {
    pub(crate) fn new(stream: BodyDataStream, max: usize) -> Self {
        Self {
            stream,
            buffer: Vec::new(),
            start: 0,
            scanned: 0,
            max,
            skipping: false,
            done: false,
        }
    }

    /// The next line, `None` at the end, `Err` if the body broke off.
    pub(crate) async fn next_line(&mut self) -> Result<Option<Line>, ()> {
        loop {
            if let Some(offset) = self.buffer[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.scanned + offset;
                let line = self.take_line(end);
                self.start = end + 1;
                self.scanned = self.start;
                return Ok(Some(line));
            }
            self.scanned = self.buffer.len();
            if self.buffer.len() - self.start > self.max {
                // Too long: forget what is buffered, skip to the next newline.
                self.skipping = true;
                self.buffer.clear();
                self.start = 0;
                self.scanned = 0;
            }
            if self.done {
                if self.start == self.buffer.len() && !self.skipping {
                    return Ok(None);
                }
                let end = self.buffer.len();
                let line = self.take_line(end);
                self.start = end;
                self.scanned = end;
                return Ok(Some(line));
            }
            match self.stream.next().await {
                Some(Ok(frame)) => {
                    if self.start > 0 {
                        self.buffer.drain(..self.start);
                        self.scanned -= self.start;
                        self.start = 0;
                    }
                    self.buffer.extend_from_slice(&frame);
                }
                Some(Err(_)) => return Err(()),
                None => self.done = true,
            }
        }
    }

    fn take_line(&mut self, end: usize) -> Line {
        if std::mem::take(&mut self.skipping) {
            return Line::TooLong;
        }
        let mut line = &self.buffer[self.start..end];
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        if line.len() > self.max {
            Line::TooLong
        } else {
            Line::Text(line.to_vec())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::body::{Body, Bytes};

    use super::*;

    async fn lines_of(frames: &[&[u8]], max: usize) -> Vec<String> {
        let frames: Vec<Result<Bytes, Infallible>> = frames
            .iter()
            .map(|f| Ok(Bytes::copy_from_slice(f)))
            .collect();
        let body = Body::from_stream(futures_util::stream::iter(frames));
        let mut reader = LineReader::new(body.into_data_stream(), max);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().await.expect("no body error") {
            out.push(match line {
                Line::Text(text) => String::from_utf8(text).expect("utf-8"),
                Line::TooLong => "<too long>".to_owned(),
            });
        }
        out
    }

    #[tokio::test]
    async fn lines_split_across_frames_and_too_long_lines_are_skipped() {
        assert_eq!(
            lines_of(&[b"ab", b"c\r\nde\n", b"\nf"], 10).await,
            ["abc", "de", "", "f"]
        );
        assert_eq!(
            lines_of(&[b"a\n"], 10).await,
            ["a"],
            "a final newline ends the last line"
        );
        assert_eq!(
            lines_of(&[b"0123456789", b"0123456789\nok\n", b"01234567890123"], 10).await,
            ["<too long>", "ok", "<too long>"]
        );
        assert!(lines_of(&[], 10).await.is_empty());
    }
}
