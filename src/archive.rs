//! MCAP-based archives, profile "replayscope" (DESIGN.md section 3): writer, reader, chunk
//! index, segment directories and the hash chain. No tonic, no ratatui.

pub mod cache;
pub mod format;
pub mod index;
pub mod integrity;
pub mod jsonl;
pub mod reader;
pub mod repair;
pub mod rewrite;
pub mod s3;
pub mod scan;
pub mod segments;
pub mod snapshot;
pub mod storage;
pub mod verify;
pub mod watch;
pub mod writer;

pub use reader::{Archive, Cursor, OpenOptions, RawEvent};
pub use writer::{ArchiveWriter, Compression, SegmentedWriter, WriterOptions};

/// The MCAP header profile of replayscope archives.
pub const PROFILE: &str = "replayscope";
/// The schema name of stored messages.
pub const SCHEMA_NAME: &str = "replayscope.v1.ArchivedEvent";
/// The name of the metadata record holding the hash chain and ranges.
pub const METADATA_NAME: &str = "replayscope";
/// The name of the metadata record holding the archive's markers (DESIGN.md section 14).
pub const MARKERS_METADATA: &str = "replayscope.markers";
/// Format version written into the metadata record.
pub const FORMAT_VERSION: &str = "1";

/// Everything that can go wrong with an archive. Every variant names the file and, where it
/// applies, the byte position or event offset.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: empty file (0 bytes), not an archive")]
    Empty { path: String },
    #[error(
        "{path}: not an MCAP file (bad magic at byte 0){}",
        if path.ends_with(".jsonl") || path.ends_with(".json") {
            "; a JSON Lines file becomes an archive with `replayscope import`"
        } else {
            ""
        }
    )]
    NotMcap { path: String },
    #[error(
        "{path}: MCAP profile {profile:?} is not a replayscope archive (expected profile \"replayscope\")"
    )]
    WrongProfile { path: String, profile: String },
    #[error("{path}: {what} at byte {at}")]
    Corrupt { path: String, at: u64, what: String },
    #[error(
        "{path}: truncated at byte {at} of {size} (no footer){prefix}; open with --allow-truncated to use \
         the readable prefix, or repair it with `replayscope verify --repair`"
    )]
    Truncated {
        path: String,
        at: u64,
        size: u64,
        /// Describes the readable prefix, e.g. "; events 0 to 3999 are readable".
        prefix: String,
    },
    #[error(
        "{path}: CRC mismatch in chunk at byte {at} (stored {expected:08x}, computed {actual:08x})"
    )]
    Crc {
        path: String,
        at: u64,
        expected: u32,
        actual: u32,
    },
    #[error("{path}: hash chain mismatch{context}: expected {expected}, computed {actual}")]
    HashMismatch {
        path: String,
        context: String,
        expected: String,
        actual: String,
    },
    #[error(
        "continuity gap between segments {prev} (last offset {prev_last}) and {next} (first offset \
         {next_first}, expected {expected})",
        expected = prev_last + 1
    )]
    ContinuityGap {
        prev: String,
        next: String,
        prev_last: u64,
        next_first: u64,
    },
    #[error(
        "hash mismatch between segments {prev} (final hash {prev_hash}) and {next} (chain starts at \
         {next_start})"
    )]
    ChainBreak {
        prev: String,
        next: String,
        prev_hash: String,
        next_start: String,
    },
    #[error("{path}: offset gap at byte {at}: expected offset {expected}, found {found}")]
    OffsetGap {
        path: String,
        at: u64,
        expected: u64,
        found: u64,
    },
    #[error(
        "{path}: commit order goes backwards at offset {offset}: commit_ts {commit_ts} after {prev_commit_ts}"
    )]
    OrderBackwards {
        path: String,
        offset: u64,
        commit_ts: u64,
        prev_commit_ts: u64,
    },
    #[error("{path}: cannot decode event at offset {offset}: {message}")]
    Decode {
        path: String,
        offset: u64,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: {target} is outside the archive ({range})")]
    OutOfRange {
        path: String,
        target: String,
        range: String,
    },
    #[error("{path}:{line}: {message}")]
    Jsonl {
        path: String,
        line: u64,
        message: String,
    },
    #[error("{path}: write failed: {message}")]
    Write { path: String, message: String },
}

impl ArchiveError {
    /// Integrity failures (exit code 3) as opposed to usage or I/O failures.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            ArchiveError::Crc { .. }
                | ArchiveError::HashMismatch { .. }
                | ArchiveError::ContinuityGap { .. }
                | ArchiveError::ChainBreak { .. }
                | ArchiveError::OffsetGap { .. }
                | ArchiveError::OrderBackwards { .. }
                | ArchiveError::Truncated { .. }
                | ArchiveError::Corrupt { .. }
                | ArchiveError::Decode { .. }
        )
    }

    pub(crate) fn io(path: &str, source: std::io::Error) -> ArchiveError {
        if source.kind() == std::io::ErrorKind::NotFound {
            ArchiveError::NotFound {
                path: path.to_string(),
            }
        } else if source.kind() == std::io::ErrorKind::InvalidInput {
            // A special file given as an archive (`storage::check_not_special`).
            ArchiveError::Invalid {
                path: path.to_string(),
                message: source.to_string(),
            }
        } else {
            ArchiveError::Io {
                path: path.to_string(),
                source,
            }
        }
    }
}

pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;
