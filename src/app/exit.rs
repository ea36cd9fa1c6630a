//! Exit codes (DESIGN.md section 8) and the errors that choose them: 0 ok, 1 runtime failure,
//! 2 usage or configuration error, 3 integrity failure, 130 stopped by Ctrl-C (143 by SIGTERM).

use crate::archive::ArchiveError;
use crate::player::PlayerError;
use crate::server::ServeError;
use crate::source::SourceError;
use crate::source::open::OpenError;

pub const OK: i32 = 0;
pub const FAILURE: i32 = 1;
pub const USAGE: i32 = 2;
pub const INTEGRITY: i32 = 3;
pub const INTERRUPTED: i32 = 130;
/// Stopped by SIGTERM after the report was written (128 + 15, as shells report it).
pub const TERMINATED: i32 = 143;

/// A mistake in how the command was called (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// How a run that did not simply finish ended, for the exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    /// Hash, continuity, order or state mismatch (exit 3).
    #[error("{0}")]
    Integrity(String),
    #[error("{0}")]
    Failed(String),
    /// Stopped by Ctrl-C or SIGTERM after the report was written (exit 130).
    #[error("stopped by {}{}", .0.label(), .1.map(|o| format!("; resume with --from {o}")).unwrap_or_default())]
    Interrupted(StopSignal, Option<u64>),
}

/// What stopped a command early.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StopSignal {
    /// Ctrl-C (SIGINT).
    #[default]
    Interrupt,
    /// SIGTERM (a service manager, `kill`).
    Terminate,
}

impl StopSignal {
    pub fn label(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "Ctrl-C",
            StopSignal::Terminate => "SIGTERM",
        }
    }
}

impl RunFailure {
    /// The failure of a player report whose outcome is failed.
    pub fn of_report(report: &crate::player::Report) -> Option<RunFailure> {
        let crate::player::Outcome::Failed { integrity } = report.outcome else {
            return None;
        };
        let reason = report.reason.clone().unwrap_or_default();
        Some(if integrity {
            RunFailure::Integrity(reason)
        } else {
            RunFailure::Failed(reason)
        })
    }
}

fn source_code(s: &SourceError) -> i32 {
    if s.is_integrity() { INTEGRITY } else { USAGE }
}

fn archive_code(a: &ArchiveError) -> i32 {
    match a {
        a if a.is_integrity() => INTEGRITY,
        ArchiveError::Io { .. } | ArchiveError::Write { .. } => FAILURE,
        _ => USAGE,
    }
}

/// The exit code for an error: the first cause that decides it.
pub fn exit_code(err: &color_eyre::Report) -> i32 {
    for cause in err.chain() {
        if let Some(p) = cause.downcast_ref::<RunFailure>() {
            return match p {
                RunFailure::Integrity(_) => INTEGRITY,
                RunFailure::Failed(_) => FAILURE,
                RunFailure::Interrupted(StopSignal::Interrupt, _) => INTERRUPTED,
                RunFailure::Interrupted(StopSignal::Terminate, _) => TERMINATED,
            };
        }
        if let Some(s) = cause.downcast_ref::<SourceError>() {
            return source_code(s);
        }
        if let Some(o) = cause.downcast_ref::<OpenError>() {
            return match o {
                OpenError::Archive(a) => archive_code(a),
                OpenError::Source(s) => source_code(s),
                OpenError::Usage(_) => USAGE,
            };
        }
        if let Some(p) = cause.downcast_ref::<PlayerError>() {
            return match p {
                PlayerError::Source(s) if s.is_integrity() => INTEGRITY,
                PlayerError::Output(_) => FAILURE,
                _ => USAGE,
            };
        }
        if cause.downcast_ref::<UsageError>().is_some() {
            return USAGE;
        }
        if let Some(e) = cause.downcast_ref::<ServeError>() {
            return match e {
                ServeError::Tls { .. } | ServeError::TlsFile { .. } => USAGE,
                _ => FAILURE,
            };
        }
        if let Some(a) = cause.downcast_ref::<ArchiveError>() {
            return archive_code(a);
        }
    }
    FAILURE
}

/// True when the error is a write into a pipe whose reader went away (`info … | head`): not a
/// failure of the command (DESIGN.md section 15: a closed stdout ends quietly with exit 0).
pub fn reader_went_away(err: &color_eyre::Report) -> bool {
    err.chain().any(|cause| {
        let kind = cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| {
                cause
                    .downcast_ref::<serde_json::Error>()
                    .and_then(serde_json::Error::io_error_kind)
            });
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes as one line: causes already quoted by an earlier one are left out.
pub fn one_line(err: &color_eyre::Report) -> String {
    crate::error_line::join_causes(err.chain().map(|c| c.to_string()))
}
