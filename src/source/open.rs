//! What the user typed -> a [`Source`]: a path (archive file or segment directory, detected by
//! magic bytes), `s3://bucket/key-or-prefix`, `replayscope://host:port`, `statehouse://host:port`
//! or `grpc://host:port` (probes which of the two answers). Every front end opens its source
//! here.

use std::path::Path;
use std::sync::Arc;

use crate::archive::{Archive, ArchiveError, OpenOptions};
use crate::source::{ArchiveSource, RemoteSource, Source, SourceError, StatehouseSource};
use crate::wire::{ConnectOptions, RetryPolicy};

/// How to read the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceMode {
    /// By its form: a scheme names the protocol, anything else is an archive.
    #[default]
    Auto,
    Archive,
    Statehouse,
    Replayscope,
}

impl SourceMode {
    pub fn label(self) -> &'static str {
        match self {
            SourceMode::Auto => "auto",
            SourceMode::Archive => "archive",
            SourceMode::Statehouse => "statehouse",
            SourceMode::Replayscope => "replayscope",
        }
    }
}

/// What a source turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Archive,
    Replayscope,
    Statehouse,
}

impl SourceKind {
    pub fn label(self) -> &'static str {
        match self {
            SourceKind::Archive => "archive",
            SourceKind::Replayscope => "replayscope",
            SourceKind::Statehouse => "statehouse",
        }
    }
}

/// Everything needed to open a source besides its text.
#[derive(Debug, Clone, Default)]
pub struct OpenRequest {
    pub mode: SourceMode,
    /// Use the readable prefix of a truncated archive.
    pub allow_truncated: bool,
    pub connect: ConnectOptions,
    pub retry: RetryPolicy,
    /// `NAMESPACE/AGENT_ID`, one or more (a Statehouse endpoint replays the agents it is
    /// given: it cannot list them).
    pub agents: Vec<String>,
    /// Follow the source as it grows (`--follow`).
    pub follow: bool,
    /// How often a followed Statehouse daemon is asked for what is new.
    pub poll: crate::source::statehouse::PollPolicy,
    /// For a JSON Lines source: where events' wall times come from (`--time-field`).
    pub time_field: Option<crate::event::TimeField>,
    /// Where the source's markers are kept (`--markers FILE`); by default beside a local
    /// source (`SOURCE.markers.json`).
    pub markers: Option<std::path::PathBuf>,
}

/// Why a source could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The text and the mode do not fit together.
    #[error("{0}")]
    Usage(String),
}

const ENDPOINT_SCHEMES: [&str; 3] = ["replayscope", "statehouse", "grpc"];

/// The longest line a JSON Lines source may have (as `import`'s default).
const JSONL_MAX_LINE_BYTES: usize = 8 << 20;

/// Whether `text` names a network endpoint rather than an archive.
pub fn is_endpoint(text: &str) -> bool {
    text.split_once("://")
        .is_some_and(|(s, _)| ENDPOINT_SCHEMES.contains(&s))
}

fn unknown_scheme(text: &str, scheme: &str) -> String {
    format!(
        "{text}: unknown scheme {scheme}://; a source is a path, s3://bucket/prefix, \
         replayscope://host:port, statehouse://host:port or grpc://host:port"
    )
}

/// For the commands that read archives only (info, verify, export, serve): a URL other than
/// `s3://` is a usage error naming what they take.
pub fn check_archive_name(text: &str) -> Result<(), String> {
    match text.split_once("://").map(|(s, _)| s) {
        None | Some("s3") => Ok(()),
        Some(s) if ENDPOINT_SCHEMES.contains(&s) => Err(format!(
            "{text}: this command reads an archive (a file, a segment directory or \
             s3://bucket/prefix), not a network endpoint; `replayscope play {text}` replays it"
        )),
        Some(s) => Err(unknown_scheme(text, s)),
    }
}

/// Checks the `host:port` of an endpoint URL before any connection is tried: a missing host,
/// a missing, zero or out-of-range port is a usage error at once, not a round of retries.
pub fn check_endpoint(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("{url}: expected SCHEME://host:port"));
    };
    let address = rest.trim_end_matches('/');
    let form = format!("expected {scheme}://host:port (e.g. {scheme}://127.0.0.1:50051)");
    if address.contains('/') {
        return Err(format!("{url}: an endpoint has no path; {form}"));
    }
    let Some((host, port)) = address.rsplit_once(':').filter(|(h, _)| !h.ends_with(':')) else {
        let missing = if address.is_empty() {
            "no host and no port"
        } else {
            "no port"
        };
        return Err(format!("{url}: {missing}; {form}"));
    };
    if host.is_empty() || host == "[]" {
        return Err(format!("{url}: no host; {form}"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!(
            "{url}: port {port:?} is not a port number (1 to 65535); {form}"
        )),
    }
}

/// Opens `text` as `req.mode` says (auto: by its form); returns the source, with its markers,
/// and what kind of source it turned out to be. Blocking (it connects or reads the archive's
/// summary).
pub fn open_source(
    text: &str,
    req: &OpenRequest,
) -> Result<(Arc<dyn Source>, SourceKind), OpenError> {
    let (source, kind, stored) = open_plain(text, req)?;
    let sidecar = req
        .markers
        .clone()
        .or_else(|| crate::source::marked::default_sidecar(text));
    let marked = crate::source::marked::Marked::new(source, stored, sidecar)?;
    Ok((Arc::new(marked), kind))
}

/// The source itself, and the markers it holds.
fn open_plain(
    text: &str,
    req: &OpenRequest,
) -> Result<(Arc<dyn Source>, SourceKind, crate::event::marker::MarkerSet), OpenError> {
    let scheme = text.split_once("://").map(|(s, _)| s);
    if let Some(s) = scheme
        && s != "s3"
        && !ENDPOINT_SCHEMES.contains(&s)
    {
        return Err(OpenError::Usage(unknown_scheme(text, s)));
    }
    let with_scheme = |prefix: &str| match text.split_once("://") {
        Some((_, rest)) => format!("{prefix}://{rest}"),
        None => format!("{prefix}://{text}"),
    };
    let endpoint = match (req.mode, scheme) {
        (SourceMode::Auto, Some(s)) if ENDPOINT_SCHEMES.contains(&s) => Some(text.to_string()),
        (SourceMode::Archive, Some(s)) if ENDPOINT_SCHEMES.contains(&s) => {
            return Err(OpenError::Usage(format!(
                "{text}: --mode archive takes a path or s3:// URL, not a {s}:// endpoint"
            )));
        }
        (SourceMode::Auto | SourceMode::Archive, _) => None,
        (SourceMode::Statehouse, None | Some("statehouse" | "grpc")) => {
            Some(with_scheme("statehouse"))
        }
        (SourceMode::Replayscope, None | Some("replayscope" | "grpc")) => {
            Some(with_scheme("replayscope"))
        }
        (m, Some(s)) => {
            return Err(OpenError::Usage(format!(
                "{text}: --mode {} does not take a {s}:// source",
                m.label()
            )));
        }
    };
    if let Some(url) = &endpoint {
        check_endpoint(url).map_err(OpenError::Usage)?;
    }
    let Some(url) = endpoint else {
        // A followed archive may be one still being written: its last file is read to its
        // last complete chunk.
        let options = OpenOptions {
            allow_truncated: req.allow_truncated || req.follow,
        };
        let path = Path::new(text);
        let archive = if crate::archive::jsonl::looks_like_jsonl(path) {
            // A JSON Lines export or agent dump plays directly (imported on the fly).
            let agent = req.agents.first().and_then(|a| {
                a.split_once('/')
                    .filter(|(n, id)| !n.is_empty() && !id.is_empty() && !id.contains('/'))
                    .map(|(n, id)| (n.to_string(), id.to_string()))
            });
            crate::archive::jsonl::open_as_archive(
                path,
                agent,
                JSONL_MAX_LINE_BYTES,
                req.time_field.as_ref(),
            )?
        } else {
            Archive::open(path, options)?
        };
        if req.follow {
            archive.log_notes_following();
        } else {
            archive.log_notes();
        }
        let stored = archive.markers();
        let source = if req.follow && !crate::archive::jsonl::looks_like_jsonl(path) {
            ArchiveSource::followed(archive)
        } else {
            ArchiveSource::new(archive)
        };
        return Ok((Arc::new(source), SourceKind::Archive, stored));
    };
    let as_replayscope =
        |url: &str| RemoteSource::connect(url, req.connect.clone(), req.retry.clone(), req.follow);
    let as_statehouse = |url: &str| {
        StatehouseSource::connect(
            url,
            crate::source::statehouse::StatehouseOptions {
                connect: req.connect.clone(),
                retry: req.retry.clone(),
                agents: req.agents.clone(),
                follow: req.follow,
                poll: req.poll,
            },
        )
    };
    let none = crate::event::marker::MarkerSet::default;
    Ok(match url.split_once("://").map(|(s, _)| s) {
        Some("replayscope") => (
            Arc::new(as_replayscope(&url)?),
            SourceKind::Replayscope,
            none(),
        ),
        Some("statehouse") => (
            Arc::new(as_statehouse(&url)?),
            SourceKind::Statehouse,
            none(),
        ),
        // Probe: a replayscope endpoint answers Describe; anything else is taken for a
        // Statehouse daemon.
        _ => {
            let rest = &url["grpc://".len()..];
            match as_replayscope(&format!("replayscope://{rest}")) {
                Ok(r) => {
                    tracing::info!(endpoint = %url, "grpc:// probe: a replayscope endpoint");
                    (Arc::new(r), SourceKind::Replayscope, none())
                }
                Err(probe) => {
                    tracing::info!(endpoint = %url, %probe, "grpc:// probe: not replayscope, trying Statehouse Replay");
                    (
                        Arc::new(as_statehouse(&format!("statehouse://{rest}"))?),
                        SourceKind::Statehouse,
                        none(),
                    )
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::check_endpoint;

    #[test]
    fn endpoint_addresses_are_checked_before_connecting() {
        for good in [
            "replayscope://127.0.0.1:50051",
            "statehouse://localhost:1/",
            "grpc://[::1]:8080",
        ] {
            assert_eq!(check_endpoint(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("replayscope://", "no host and no port"),
            ("replayscope://127.0.0.1", "no port"),
            ("replayscope://127.0.0.1:99999", "not a port number"),
            ("replayscope://127.0.0.1:0", "not a port number"),
            ("replayscope://:50051", "no host"),
            ("replayscope://[::1]", "no port"),
            ("statehouse://h:1/x", "no path"),
        ] {
            let e = check_endpoint(bad).unwrap_err();
            assert!(e.contains(says) && e.starts_with(bad), "{bad}: {e}");
        }
    }
}
