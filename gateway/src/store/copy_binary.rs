//! PostgreSQL's binary `COPY ... TO STDOUT (FORMAT binary)` format, parsed
//! straight from the received bytes: the fastest way rows leave PostgreSQL,
//! used by the bulk reads that go through the native driver (the audit chain,
//! [`super::chain`]; the audited tables' ids, [`super::record_ids`]).
//!
//! The stream is a signature, flags and an extension area, then tuples (a
//! 16-bit field count, each field a 32-bit length, -1 for NULL, and its bytes,
//! big-endian throughout), then a field count of -1. Tuples are parsed from
//! each received chunk in place and handed to a [`CopySink`] as borrowed
//! fields; only a tuple split across chunks is copied.

use super::StoreError;

/// The most fields a tuple may have (the audit log's 14 columns).
pub(crate) const MAX_FIELDS: usize = 14;

/// What receives the tuples of one `COPY`, in order.
pub(crate) trait CopySink {
    /// Fields per tuple; a tuple with another count is malformed. At most
    /// [`MAX_FIELDS`].
    const FIELDS: usize;

    /// One tuple's fields (`None` for NULL), borrowed from the received bytes.
    fn tuple(&mut self, fields: &[Option<&[u8]>]) -> Result<(), StoreError>;
}

/// Parses one `COPY`'s stream, chunk by chunk.
#[derive(Default)]
pub(crate) struct CopyParser {
    /// The start of a tuple (or of the header) whose end has not arrived yet.
    pending: Vec<u8>,
    header_read: bool,
    ended: bool,
}

const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

pub(crate) const MALFORMED: StoreError = StoreError::Corrupt {
    what: "a COPY stream from PostgreSQL is not in the expected shape",
};

enum Tuple {
    /// Not all of it has arrived.
    Incomplete,
    /// The end marker.
    End,
    /// A tuple of this many bytes was handed to the sink.
    Read(usize),
}

impl CopyParser {
    pub(crate) fn feed<S: CopySink>(
        &mut self,
        chunk: &[u8],
        sink: &mut S,
    ) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            let used = self.parse(chunk, sink)?;
            self.pending.extend_from_slice(&chunk[used..]);
        } else {
            let mut pending = std::mem::take(&mut self.pending);
            pending.extend_from_slice(chunk);
            let used = self.parse(&pending, sink)?;
            pending.drain(..used);
            self.pending = pending;
        }
        Ok(())
    }

    /// After the last chunk: the end marker must have come, and nothing after.
    pub(crate) fn finish(self) -> Result<(), StoreError> {
        if self.ended && self.pending.is_empty() {
            Ok(())
        } else {
            Err(MALFORMED)
        }
    }

    /// Parses what is complete in `buf`; returns how many bytes it used.
    fn parse<S: CopySink>(&mut self, buf: &[u8], sink: &mut S) -> Result<usize, StoreError> {
        if self.ended {
            return if buf.is_empty() {
                Ok(0)
            } else {
                Err(MALFORMED)
            };
        }
        let mut used = 0;
        if !self.header_read {
            // Signature (11 bytes), flags (4), extension length (4), extension.
            let Some(extension) = buf.get(15..19) else {
                return Ok(0);
            };
            if !buf.starts_with(COPY_SIGNATURE) {
                return Err(MALFORMED);
            }
            let extension = usize::try_from(be_u32(extension)).map_err(|_| MALFORMED)?;
            used = 19 + extension;
            if buf.len() < used {
                return Ok(0);
            }
            self.header_read = true;
        }
        loop {
            match tuple(&buf[used..], sink)? {
                Tuple::Incomplete => return Ok(used),
                Tuple::End => {
                    self.ended = true;
                    used += 2;
                    return if used == buf.len() {
                        Ok(used)
                    } else {
                        Err(MALFORMED)
                    };
                }
                Tuple::Read(length) => used += length,
            }
        }
    }
}

/// Hands the tuple at the start of `buf` to `sink`, if all of it is there.
fn tuple<S: CopySink>(buf: &[u8], sink: &mut S) -> Result<Tuple, StoreError> {
    let Some(count) = buf.get(..2) else {
        return Ok(Tuple::Incomplete);
    };
    match i16::from_be_bytes([count[0], count[1]]) {
        -1 => return Ok(Tuple::End),
        count if usize::try_from(count).is_ok_and(|count| count == S::FIELDS) => {}
        _ => return Err(MALFORMED),
    }
    let mut fields: [Option<&[u8]>; MAX_FIELDS] = [None; MAX_FIELDS];
    let mut at = 2;
    for field in fields.iter_mut().take(S::FIELDS) {
        let Some(length) = buf.get(at..at + 4) else {
            return Ok(Tuple::Incomplete);
        };
        at += 4;
        let length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
        if length == -1 {
            continue;
        }
        let length = usize::try_from(length).map_err(|_| MALFORMED)?;
        let Some(value) = buf.get(at..at + length) else {
            return Ok(Tuple::Incomplete);
        };
        *field = Some(value);
        at += length;
    }
    sink.tuple(&fields[..S::FIELDS])?;
    Ok(Tuple::Read(at))
}

fn be_u32(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0, |value, &byte| (value << 8) | u32::from(byte))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Collects every tuple as owned fields.
    #[derive(Default)]
    struct Seen<const N: usize>(Vec<Vec<Option<Vec<u8>>>>);

    impl<const N: usize> CopySink for Seen<N> {
        const FIELDS: usize = N;
        fn tuple(&mut self, fields: &[Option<&[u8]>]) -> Result<(), StoreError> {
            self.0
                .push(fields.iter().map(|f| f.map(<[u8]>::to_vec)).collect());
            Ok(())
        }
    }

    /// One field as the binary format writes it.
    pub(crate) fn field(out: &mut Vec<u8>, value: Option<&[u8]>) {
        match value {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(bytes) => {
                out.extend_from_slice(&i32::try_from(bytes.len()).expect("short").to_be_bytes());
                out.extend_from_slice(bytes);
            }
        }
    }

    /// A whole stream of `rows`, each a list of fields.
    pub(crate) fn stream(rows: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
        let mut out = COPY_SIGNATURE.to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        // A four-byte extension area, which readers must skip.
        out.extend_from_slice(&4u32.to_be_bytes());
        out.extend_from_slice(b"skip");
        for row in rows {
            out.extend_from_slice(&i16::try_from(row.len()).expect("few").to_be_bytes());
            for value in row {
                field(&mut out, *value);
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    #[test]
    fn tuples_of_any_width_split_anywhere_parse_the_same() {
        let rows = vec![
            vec![
                Some(&b"0190f3a2-7c1e-7d4b-9a4e-000000000001"[..]),
                Some(&[1][..]),
            ],
            vec![Some(&b"r-2"[..]), None],
            vec![None, Some(&[0][..])],
        ];
        let bytes = stream(&rows);
        let mut whole = CopyParser::default();
        let mut expected = Seen::<2>::default();
        whole.feed(&bytes, &mut expected).expect("parse");
        whole.finish().expect("complete");
        assert_eq!(expected.0.len(), 3);
        assert_eq!(expected.0[1][0].as_deref(), Some(&b"r-2"[..]));
        assert_eq!(expected.0[2][0], None);
        for size in [1, 2, 3, 7, 19, 64] {
            let mut parser = CopyParser::default();
            let mut seen = Seen::<2>::default();
            for chunk in bytes.chunks(size) {
                parser.feed(chunk, &mut seen).expect("parse");
            }
            parser.finish().expect("complete");
            assert_eq!(seen.0, expected.0, "chunks of {size}");
        }
    }

    #[test]
    fn a_tuple_of_another_width_is_an_error() {
        let bytes = stream(&[vec![Some(&b"a"[..])]]);
        assert!(
            CopyParser::default()
                .feed(&bytes, &mut Seen::<2>::default())
                .is_err()
        );
    }

    #[test]
    fn a_cut_or_misshapen_stream_is_an_error() {
        let bytes = stream(&[vec![Some(&b"pd"[..])]]);
        let mut cut = CopyParser::default();
        cut.feed(&bytes[..bytes.len() - 3], &mut Seen::<1>::default())
            .expect("so far");
        assert!(cut.finish().is_err());

        let mut wrong = bytes.clone();
        wrong[0] = b'X';
        assert!(
            CopyParser::default()
                .feed(&wrong, &mut Seen::<1>::default())
                .is_err()
        );

        let mut trailing = bytes;
        trailing.push(0);
        assert!(
            CopyParser::default()
                .feed(&trailing, &mut Seen::<1>::default())
                .is_err()
        );
    }
}
