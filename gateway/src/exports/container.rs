//! The export's container: a ZIP archive written as a stream, and the writers
//! it passes through on its way to disk.
//!
//! Why ZIP: one file holds every table and the data dictionary, and
//! `unzip`, Python's `zipfile` / `pandas.read_csv(zipfile.ZipFile(...).open(...))`
//! and R's `unzip()` / `read.csv(unz(...))` open it with nothing installed.
//! A tar would need each member's size before its bytes, which a stream does
//! not know. Entries are *stored* (no compression: age output does not compress
//! anyway, and stored entries keep the writer trivial) with the sizes and CRC in
//! a data descriptor after each entry (general-purpose flag bit 3) and in the
//! central directory at the end, which is what readers use. No ZIP64: an entry
//! or archive past 4 GiB fails the export rather than writing a broken file.
//!
//! The chain, outermost last: table rows → [`EntryWriter`] (CRC, size) →
//! [`ZipStream`] (offsets, directory) → [`Hashing`] (BLAKE3 of the plaintext)
//! → age's `StreamWriter` (encryption) → [`Hashing`] (BLAKE3 of the
//! ciphertext) → the file. Nothing unencrypted is ever written to disk.

use std::io::{self, Write};

/// Passes bytes through and hashes them.
pub struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: blake3::Hasher::new(),
        }
    }

    pub fn into_parts(self) -> (W, blake3::Hash) {
        (self.inner, self.hasher.finalize())
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// CRC-32 (IEEE), table-driven.
struct Crc32 {
    table: [u32; 256],
}

impl Crc32 {
    fn new() -> Self {
        let mut table = [0u32; 256];
        for (n, slot) in (0u32..).zip(table.iter_mut()) {
            let mut c = n;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        Self { table }
    }

    fn update(&self, crc: u32, bytes: &[u8]) -> u32 {
        let mut c = !crc;
        for b in bytes {
            c = self.table[((c ^ u32::from(*b)) & 0xff) as usize] ^ (c >> 8);
        }
        !c
    }
}

struct Finished {
    name: String,
    crc: u32,
    size: u32,
    offset: u32,
}

/// A ZIP archive written front to back.
pub struct ZipStream<W> {
    inner: W,
    offset: u64,
    crc: Crc32,
    entries: Vec<Finished>,
}

fn too_big() -> io::Error {
    io::Error::other("the export is larger than a ZIP without ZIP64 holds (4 GiB)")
}

/// DOS date 1980-01-01 00:00: entries carry no real time (the manifest has it).
const DOS_DATE: u16 = 0x21;
const FLAGS: u16 = 0x0008 | 0x0800; // data descriptor; UTF-8 names

impl<W: Write> ZipStream<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            offset: 0,
            crc: Crc32::new(),
            entries: Vec::new(),
        }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Starts an entry; write its bytes to the result and [`EntryWriter::finish`] it.
    pub fn entry(&mut self, name: &str) -> io::Result<EntryWriter<'_, W>> {
        let offset = u32::try_from(self.offset).map_err(|_| too_big())?;
        let mut header = Vec::with_capacity(30 + name.len());
        header.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        header.extend_from_slice(&20u16.to_le_bytes()); // version needed
        header.extend_from_slice(&FLAGS.to_le_bytes());
        header.extend_from_slice(&0u16.to_le_bytes()); // stored
        header.extend_from_slice(&0u16.to_le_bytes()); // time
        header.extend_from_slice(&DOS_DATE.to_le_bytes());
        header.extend_from_slice(&[0; 12]); // crc, sizes: in the descriptor
        header.extend_from_slice(&u16::try_from(name.len()).unwrap_or(0).to_le_bytes());
        header.extend_from_slice(&0u16.to_le_bytes()); // extra
        header.extend_from_slice(name.as_bytes());
        self.put(&header)?;
        Ok(EntryWriter {
            zip: self,
            name: name.to_owned(),
            offset,
            crc: 0,
            size: 0,
        })
    }

    /// Writes the central directory and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let start = u32::try_from(self.offset).map_err(|_| too_big())?;
        let entries = std::mem::take(&mut self.entries);
        for e in &entries {
            let mut d = Vec::with_capacity(46 + e.name.len());
            d.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            d.extend_from_slice(&0x031eu16.to_le_bytes()); // made by: Unix, 3.0
            d.extend_from_slice(&20u16.to_le_bytes());
            d.extend_from_slice(&FLAGS.to_le_bytes());
            d.extend_from_slice(&0u16.to_le_bytes());
            d.extend_from_slice(&0u16.to_le_bytes());
            d.extend_from_slice(&DOS_DATE.to_le_bytes());
            d.extend_from_slice(&e.crc.to_le_bytes());
            d.extend_from_slice(&e.size.to_le_bytes());
            d.extend_from_slice(&e.size.to_le_bytes());
            d.extend_from_slice(&u16::try_from(e.name.len()).unwrap_or(0).to_le_bytes());
            d.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attrs
            d.extend_from_slice(&(0o100_644u32 << 16).to_le_bytes()); // -rw-r--r--
            d.extend_from_slice(&e.offset.to_le_bytes());
            d.extend_from_slice(e.name.as_bytes());
            self.put(&d)?;
        }
        let size = u32::try_from(self.offset - u64::from(start)).map_err(|_| too_big())?;
        let count = u16::try_from(entries.len()).map_err(|_| too_big())?;
        let mut end = Vec::with_capacity(22);
        end.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        end.extend_from_slice(&[0; 4]); // disk numbers
        end.extend_from_slice(&count.to_le_bytes());
        end.extend_from_slice(&count.to_le_bytes());
        end.extend_from_slice(&size.to_le_bytes());
        end.extend_from_slice(&start.to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes());
        self.put(&end)?;
        Ok(self.inner)
    }
}

/// One entry being written.
pub struct EntryWriter<'a, W: Write> {
    zip: &'a mut ZipStream<W>,
    name: String,
    offset: u32,
    crc: u32,
    size: u64,
}

impl<W: Write> EntryWriter<'_, W> {
    /// Writes the data descriptor; the entry's bytes are complete.
    pub fn finish(self) -> io::Result<()> {
        let size = u32::try_from(self.size).map_err(|_| too_big())?;
        let mut d = Vec::with_capacity(16);
        d.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
        d.extend_from_slice(&self.crc.to_le_bytes());
        d.extend_from_slice(&size.to_le_bytes());
        d.extend_from_slice(&size.to_le_bytes());
        self.zip.put(&d)?;
        self.zip.entries.push(Finished {
            name: self.name,
            crc: self.crc,
            size,
            offset: self.offset,
        });
        Ok(())
    }
}

impl<W: Write> Write for EntryWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.zip.put(buf)?;
        self.crc = self.zip.crc.update(self.crc, buf);
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.zip.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(Crc32::new().update(0, b"123456789"), 0xCBF4_3926);
        let c = Crc32::new();
        assert_eq!(c.update(c.update(0, b"12345"), b"6789"), 0xCBF4_3926);
    }

    #[test]
    fn an_archive_ends_with_its_directory() {
        let mut zip = ZipStream::new(Vec::new());
        let mut e = zip.entry("a.csv").expect("entry");
        e.write_all(b"x,y\n1,2\n").expect("write");
        e.finish().expect("finish");
        let bytes = zip.finish().expect("finish");
        assert_eq!(&bytes[..4], b"PK\x03\x04");
        assert_eq!(&bytes[bytes.len() - 22..bytes.len() - 18], b"PK\x05\x06");
    }
}
