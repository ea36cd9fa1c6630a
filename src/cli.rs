//! Command line (clap derive). Every flag can also come from a `REPLAYSCOPE_…` environment
//! variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::archive::Compression;
use crate::event::Position;

#[derive(Debug, Parser)]
#[command(
    name = "replayscope",
    version,
    about = "Replay inspector for committed-transaction event logs",
    long_about = "replayscope reads MCAP archives of committed transactions (a file or a directory of \
                  segments), checks their integrity, and converts them to and from JSON Lines.\n\n\
                  Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error, 3 integrity \
                  failure (hash, continuity, order, truncation)."
)]
pub struct Cli {
    /// Write logs to this file (never to the terminal).
    #[arg(long, global = true, env = "REPLAYSCOPE_LOG_FILE")]
    pub log_file: Option<PathBuf>,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `replayscope=debug`.
    #[arg(long, global = true, default_value = "warn", env = "REPLAYSCOPE_LOG")]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a deterministic synthetic archive that looks like a real multi-agent session.
    Gen(GenArgs),
    /// Convert JSON Lines (one event per line) into an archive.
    Import(ImportArgs),
    /// Write an archive's events as JSON Lines.
    Export(ExportArgs),
    /// Show what an archive holds: events, bytes, time range, channels, compression, final hash.
    Info(InfoArgs),
    /// Check an archive end to end: CRCs, offsets, commit order, hash chain.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct OutputArchiveArgs {
    /// Chunk compression.
    #[arg(long, value_enum, default_value_t = Compression::Zstd, env = "REPLAYSCOPE_COMPRESSION")]
    pub compression: Compression,

    /// Write a directory of segments with this many events each instead of one file.
    #[arg(long, env = "REPLAYSCOPE_SEGMENT_EVENTS")]
    pub segment_events: Option<u64>,
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Number of events.
    #[arg(long, default_value_t = 10_000, env = "REPLAYSCOPE_GEN_EVENTS")]
    pub events: u64,

    /// Number of agents (spread over up to four namespaces).
    #[arg(long, default_value_t = 6, env = "REPLAYSCOPE_GEN_AGENTS")]
    pub agents: usize,

    /// Random seed: the same seed gives the same archive.
    #[arg(long, default_value_t = 1, env = "REPLAYSCOPE_GEN_SEED")]
    pub seed: u64,

    #[command(flatten)]
    pub archive: OutputArchiveArgs,

    /// Output archive file (or directory with --segment-events).
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// JSON Lines file (`-` for standard input).
    pub input: PathBuf,

    #[command(flatten)]
    pub archive: OutputArchiveArgs,

    /// Output archive file (or directory with --segment-events).
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Archive file or segment directory.
    pub source: PathBuf,

    /// Open a truncated archive (a crashed recorder's) and use its readable prefix.
    #[arg(long, env = "REPLAYSCOPE_ALLOW_TRUNCATED")]
    pub allow_truncated: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// Output file (standard output when absent or `-`).
    #[arg(short, long)]
    pub output: Option<PathBuf>,

    /// First event: offset (1200), commit_ts (@57) or RFC 3339 time; inclusive.
    #[arg(long, env = "REPLAYSCOPE_FROM")]
    pub from: Option<Position>,

    /// Last event: offset, @commit_ts or RFC 3339 time; inclusive.
    #[arg(long, env = "REPLAYSCOPE_UNTIL")]
    pub until: Option<Position>,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// Fail unless the final hash of the chain is this (64 hex digits).
    #[arg(long, env = "REPLAYSCOPE_EXPECT_HASH")]
    pub expect_hash: Option<String>,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}
