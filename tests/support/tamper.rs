//! Changes one byte of one stored event of an uncompressed MCAP archive the way an attacker (or
//! a bad disk controller that also fixes checksums) would: the chunk CRC is recomputed, or set
//! to 0 (MCAP's "not computed"), so only the hash chain can tell.
#![allow(dead_code)]

use std::path::Path;

/// What happens to the CRC of the changed chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crc {
    Recomputed,
    Zeroed,
}

const OP_CHUNK: u8 = 0x06;
const OP_MESSAGE: u8 = 0x05;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// What is changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// A bit of the event's txn_id: the payload stays a valid event.
    Payload,
    /// The length of the message record: the chunk no longer parses from there on.
    RecordLength,
    /// The event's first field tag (an invalid wire type): the record parses, the event does
    /// not decode.
    Head,
    /// The state snapshot taken after `offset` (not the event): a bit of the agent of its last
    /// entry, so it still parses but holds another state than its hash says.
    Snapshot,
}

/// Flips a bit in the txn_id of the event at `offset` (its payload stays a valid event) and
/// fixes up the chunk CRC as `crc` says. Panics when the archive is compressed or the offset
/// is not in it.
pub fn tamper(path: &Path, offset: u32, crc: Crc) {
    damage(path, offset, Damage::Payload, crc)
}

/// Changes the event at `offset` as `what` says and fixes up the chunk CRC as `crc` says.
pub fn damage(path: &Path, offset: u32, what: Damage, crc: Crc) {
    let mut b = std::fs::read(path).unwrap();
    let mut i = 8; // magic
    while i + 9 <= b.len() {
        let (op, len) = (b[i], u64_at(&b, i + 1) as usize);
        let body = i + 9;
        if op == OP_CHUNK {
            // start time, end time, uncompressed size, then the CRC.
            let crc_at = body + 24;
            let clen = u32_at(&b, crc_at + 4) as usize;
            assert_eq!(clen, 0, "tamper needs an uncompressed archive");
            let records_len = u64_at(&b, crc_at + 8 + clen) as usize;
            let records = crc_at + 16 + clen;
            let mut j = records;
            while j < records + records_len {
                let rlen = u64_at(&b, j + 1) as usize;
                // channel id (2), sequence (4), log time, publish time, then the payload.
                let payload = j + 9 + 2 + 4 + 8 + 8;
                // A snapshot starts with field 1 (a varint), an event with field 1 (a string).
                let is_snapshot = b[payload] == 0x08;
                if b[j] == OP_MESSAGE
                    && u32_at(&b, j + 9 + 2) == offset
                    && is_snapshot == (what == Damage::Snapshot)
                {
                    match what {
                        Damage::Payload => {
                            // Field 1 (txn_id) tag and length, then its first character.
                            assert_eq!(b[payload], 0x0a, "payload starts with txn_id");
                            b[payload + 2] ^= 1;
                        }
                        Damage::RecordLength => {
                            b[j + 1..j + 9].copy_from_slice(&u64::MAX.to_le_bytes());
                        }
                        Damage::Head => b[payload] = 0x0f,
                        Damage::Snapshot => b[j + 9 + rlen - 1] ^= 1,
                    }
                    let value = match crc {
                        Crc::Recomputed => crc32fast::hash(&b[records..records + records_len]),
                        Crc::Zeroed => 0,
                    };
                    b[crc_at..crc_at + 4].copy_from_slice(&value.to_le_bytes());
                    std::fs::write(path, &b).unwrap();
                    return;
                }
                j += 9 + rlen;
            }
        }
        i = body + len;
    }
    panic!("offset {offset} not found in {}", path.display());
}
