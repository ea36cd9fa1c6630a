//! Low-level MCAP record framing used on the hot paths (chunks and the messages inside them).
//! Summary records are parsed with the `mcap` crate's `parse_record`.
//!
//! Every function here takes untrusted bytes: lengths are checked before slicing, sizes are
//! bounded before allocating, and failures come back as `FormatError` with a byte position.

use std::io::Read;

pub const MAGIC: [u8; 8] = [0x89, b'M', b'C', b'A', b'P', 0x30, b'\r', b'\n'];

pub mod op {
    pub const HEADER: u8 = 0x01;
    pub const FOOTER: u8 = 0x02;
    pub const SCHEMA: u8 = 0x03;
    pub const CHANNEL: u8 = 0x04;
    pub const MESSAGE: u8 = 0x05;
    pub const CHUNK: u8 = 0x06;
    pub const CHUNK_INDEX: u8 = 0x08;
    pub const ATTACHMENT: u8 = 0x09;
    pub const ATTACHMENT_INDEX: u8 = 0x0A;
    pub const STATISTICS: u8 = 0x0B;
    pub const METADATA: u8 = 0x0C;
    pub const METADATA_INDEX: u8 = 0x0D;
    pub const DATA_END: u8 = 0x0F;
}

/// opcode (1) + length (8).
pub const RECORD_PREFIX: u64 = 9;
/// A message record around its payload: the prefix, channel id (2), sequence (4), log and
/// publish time (8 each).
pub const MESSAGE_OVERHEAD: usize = RECORD_PREFIX as usize + 2 + 4 + 8 + 8;
/// The footer record (prefix + 20-byte body) followed by the closing magic.
pub const TAIL_LEN: u64 = RECORD_PREFIX + 20 + 8;
/// No chunk of ours is anywhere near this; a larger claimed size means corruption.
pub const MAX_CHUNK_UNCOMPRESSED: u64 = 512 * 1024 * 1024;

/// A malformed structure at a position relative to the slice that was parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    pub at: u64,
    pub what: String,
}

impl FormatError {
    fn new(at: usize, what: impl Into<String>) -> FormatError {
        FormatError {
            at: at as u64,
            what: what.into(),
        }
    }
}

pub fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}
pub fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}
pub fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?))
}

/// Splits a buffer of concatenated records into `(opcode, body, record start)`.
pub struct Records<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Records<'a> {
    pub fn new(buf: &'a [u8]) -> Records<'a> {
        Records {
            buf,
            pos: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<(u8, &'a [u8], usize), FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        let parsed = (|| {
            let opcode = *self.buf.get(start)?;
            let len = u64_at(self.buf, start + 1)?;
            let body_start = start + RECORD_PREFIX as usize;
            let end = body_start.checked_add(usize::try_from(len).ok()?)?;
            let body = self.buf.get(body_start..end)?;
            Some((opcode, body, end))
        })();
        match parsed {
            Some((opcode, body, end)) => {
                self.pos = end;
                Some(Ok((opcode, body, start)))
            }
            None => {
                self.failed = true;
                Some(Err(FormatError::new(
                    start,
                    "record runs past the end of its section",
                )))
            }
        }
    }
}

/// A chunk record's body, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct ChunkBody<'a> {
    pub message_start_time: u64,
    pub message_end_time: u64,
    pub uncompressed_size: u64,
    pub uncompressed_crc: u32,
    pub compression: &'a str,
    pub records: &'a [u8],
}

pub fn parse_chunk(body: &[u8]) -> Result<ChunkBody<'_>, FormatError> {
    let bad = |what: &str| FormatError::new(0, format!("malformed chunk: {what}"));
    let message_start_time = u64_at(body, 0).ok_or_else(|| bad("short header"))?;
    let message_end_time = u64_at(body, 8).ok_or_else(|| bad("short header"))?;
    let uncompressed_size = u64_at(body, 16).ok_or_else(|| bad("short header"))?;
    let uncompressed_crc = u32_at(body, 24).ok_or_else(|| bad("short header"))?;
    let clen = u32_at(body, 28).ok_or_else(|| bad("short header"))? as usize;
    let cstart: usize = 32;
    let compression = body
        .get(
            cstart
                ..cstart
                    .checked_add(clen)
                    .ok_or_else(|| bad("compression name"))?,
        )
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or_else(|| bad("compression name"))?;
    let rlen_at = cstart + clen;
    let rlen = u64_at(body, rlen_at).ok_or_else(|| bad("records length"))?;
    let rstart = rlen_at + 8;
    let records = usize::try_from(rlen)
        .ok()
        .and_then(|l| body.get(rstart..rstart.checked_add(l)?))
        .ok_or_else(|| bad("records run past the chunk"))?;
    Ok(ChunkBody {
        message_start_time,
        message_end_time,
        uncompressed_size,
        uncompressed_crc,
        compression,
        records,
    })
}

/// Why a chunk's records could not be recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    Format(String),
    Crc { expected: u32, actual: u32 },
}

thread_local! {
    /// One zstd decompression context per thread, reused: making one per chunk (its tables
    /// allocated and zeroed) cost ~2 % of a one-agent read.
    static ZSTD: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn zstd_decompress(data: &[u8], size: usize) -> std::io::Result<Vec<u8>> {
    ZSTD.with(|cell| {
        let mut cell = cell.borrow_mut();
        let d = match cell.as_mut() {
            Some(d) => d,
            None => cell.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress(data, size)
    })
}

/// Decompresses a chunk's records and checks their size and CRC (when the CRC is non-zero).
pub fn decompress(chunk: &ChunkBody<'_>) -> Result<Vec<u8>, ChunkError> {
    if chunk.uncompressed_size > MAX_CHUNK_UNCOMPRESSED {
        return Err(ChunkError::Format(format!(
            "chunk claims {} uncompressed bytes (limit {MAX_CHUNK_UNCOMPRESSED})",
            chunk.uncompressed_size
        )));
    }
    let size = chunk.uncompressed_size as usize;
    let data = match chunk.compression {
        "" => chunk.records.to_vec(),
        "zstd" => zstd_decompress(chunk.records, size)
            .map_err(|e| ChunkError::Format(format!("zstd: {e}")))?,
        "lz4" => {
            let mut out = Vec::with_capacity(size);
            let decoder = lz4::Decoder::new(chunk.records)
                .map_err(|e| ChunkError::Format(format!("lz4: {e}")))?;
            // Read at most one byte more than promised so a lying header cannot balloon memory.
            decoder
                .take(size as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| ChunkError::Format(format!("lz4: {e}")))?;
            out
        }
        other => {
            return Err(ChunkError::Format(format!(
                "unsupported chunk compression {other:?}"
            )));
        }
    };
    if data.len() != size {
        return Err(ChunkError::Format(format!(
            "chunk decompressed to {} bytes, header says {size}",
            data.len()
        )));
    }
    if chunk.uncompressed_crc != 0 {
        let actual = crc32fast::hash(&data);
        if actual != chunk.uncompressed_crc {
            return Err(ChunkError::Crc {
                expected: chunk.uncompressed_crc,
                actual,
            });
        }
    }
    Ok(data)
}

/// A message record's header fields and where its payload starts in the body.
#[derive(Debug, Clone, Copy)]
pub struct MessageHeader {
    pub channel_id: u16,
    pub sequence: u32,
    pub log_time: u64,
}

pub const MESSAGE_HEADER_LEN: usize = 2 + 4 + 8 + 8;

pub fn parse_message_header(body: &[u8]) -> Option<MessageHeader> {
    Some(MessageHeader {
        channel_id: u16_at(body, 0)?,
        sequence: u32_at(body, 2)?,
        log_time: u64_at(body, 6)?,
    })
    .filter(|_| body.len() >= MESSAGE_HEADER_LEN)
}

/// The profile string of a Header record body.
pub fn parse_header_profile(body: &[u8]) -> Option<String> {
    let len = u32_at(body, 0)? as usize;
    let bytes = body.get(4..4usize.checked_add(len)?)?;
    String::from_utf8(bytes.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_iterator_stops_on_overrun() {
        let mut buf = vec![op::MESSAGE];
        buf.extend_from_slice(&3u64.to_le_bytes());
        buf.extend_from_slice(b"abc");
        buf.push(op::MESSAGE);
        buf.extend_from_slice(&100u64.to_le_bytes());
        buf.extend_from_slice(b"short");
        let mut it = Records::new(&buf);
        let (opc, body, at) = it.next().unwrap().unwrap();
        assert_eq!((opc, body, at), (op::MESSAGE, &b"abc"[..], 0));
        let err = it.next().unwrap().unwrap_err();
        assert_eq!(err.at, 12);
        assert!(it.next().is_none());
    }

    #[test]
    fn huge_lengths_do_not_allocate() {
        let mut buf = vec![op::MESSAGE];
        buf.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(Records::new(&buf).next().unwrap().is_err());
        let chunk = ChunkBody {
            message_start_time: 0,
            message_end_time: 0,
            uncompressed_size: u64::MAX,
            uncompressed_crc: 0,
            compression: "zstd",
            records: b"",
        };
        assert!(matches!(decompress(&chunk), Err(ChunkError::Format(_))));
    }
}
