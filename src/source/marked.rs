//! A source with its markers (DESIGN.md section 14): the ones an archive holds, merged with the
//! ones kept beside the source (`SOURCE.markers.json`, or the file `--markers` names), so that
//! `mark:NAME` resolves wherever a position is taken — `--from`, `--until`, the seek prompt,
//! `state --at` — and the inspector can add one. Everything else is the wrapped source's.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use crate::event::Position;
use crate::event::marker::{Marker, MarkerSet};
use crate::flow::CreditWindow;
use crate::source::{BatchStream, Source, SourceError, SourceInfo, StoredStream, StreamRequest};

pub struct Marked {
    inner: Arc<dyn Source>,
    /// The markers the source itself holds (an archive's metadata record).
    stored: MarkerSet,
    /// Where markers added here are kept, and what it holds.
    sidecar: Option<(PathBuf, RwLock<MarkerSet>)>,
}

impl Marked {
    /// `inner` with the markers it holds (`stored`) and those of the file `sidecar` (read
    /// when it exists; a file that is not a marker list is an error naming it).
    pub fn new(
        inner: Arc<dyn Source>,
        stored: MarkerSet,
        sidecar: Option<PathBuf>,
    ) -> Result<Marked, SourceError> {
        let sidecar = match sidecar {
            Some(path) => {
                let set = match std::fs::read_to_string(&path) {
                    Ok(text) => MarkerSet::from_json(&text, &path.display().to_string()).map_err(
                        |message| SourceError::Invalid {
                            source_name: inner.info().name.clone(),
                            message,
                        },
                    )?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => MarkerSet::default(),
                    Err(e) => {
                        return Err(SourceError::Invalid {
                            source_name: inner.info().name.clone(),
                            message: format!("markers file {}: {e}", path.display()),
                        });
                    }
                };
                Some((path, RwLock::new(set)))
            }
            None => None,
        };
        Ok(Marked {
            inner,
            stored,
            sidecar,
        })
    }

    fn sidecar_set(&self) -> MarkerSet {
        self.sidecar
            .as_ref()
            .map(|(_, s)| s.read().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }
}

/// Where the markers of a source named `text` are kept beside it: `PATH.markers.json` for a
/// file or directory, nothing for an URL (give `--markers FILE`).
pub fn default_sidecar(text: &str) -> Option<PathBuf> {
    if text.contains("://") {
        return None;
    }
    Some(PathBuf::from(format!(
        "{}.markers.json",
        text.trim_end_matches('/')
    )))
}

impl Source for Marked {
    fn info(&self) -> &SourceInfo {
        self.inner.info()
    }

    fn resolve(&self, pos: Position, at_or_before: bool) -> Result<Option<u64>, SourceError> {
        let pos = self
            .markers()
            .resolve(&pos)
            .map_err(|message| SourceError::Invalid {
                source_name: self.info().name.clone(),
                message,
            })?;
        self.inner.resolve(pos, at_or_before)
    }

    fn resolve_coarse(&self, pos: &Position) -> Option<u64> {
        self.inner.resolve_coarse(pos)
    }

    fn open(&self, req: StreamRequest, window: CreditWindow) -> Result<BatchStream, SourceError> {
        self.inner.open(req, window)
    }

    fn open_stored(
        &self,
        req: StreamRequest,
        window: CreditWindow,
    ) -> Result<StoredStream, SourceError> {
        self.inner.open_stored(req, window)
    }

    fn chain_head_through(&self, offset: u64) -> Option<[u8; 32]> {
        self.inner.chain_head_through(offset)
    }

    fn chain_head_before(&self, offset: u64) -> Option<[u8; 32]> {
        self.inner.chain_head_before(offset)
    }

    fn remote_gauges(&self) -> Option<(crate::flow::CreditSnapshot, crate::flow::RingSnapshot)> {
        self.inner.remote_gauges()
    }

    fn status(&self) -> Option<String> {
        self.inner.status()
    }

    fn can_follow(&self) -> bool {
        self.inner.can_follow()
    }

    fn may_gain_agents(&self) -> bool {
        self.inner.may_gain_agents()
    }

    fn info_now(&self) -> SourceInfo {
        self.inner.info_now()
    }

    fn head(&self) -> Option<u64> {
        self.inner.head()
    }

    fn chunk_cache(&self) -> Option<crate::archive::cache::CacheStats> {
        self.inner.chunk_cache()
    }

    fn state_snapshot(
        &self,
        offset: u64,
    ) -> Result<Option<crate::archive::snapshot::Snapshot>, SourceError> {
        self.inner.state_snapshot(offset)
    }

    fn markers(&self) -> MarkerSet {
        self.stored.clone().merged(&self.sidecar_set())
    }

    fn save_marker(&self, marker: Marker) -> Result<String, String> {
        let Some((path, set)) = &self.sidecar else {
            return Err(format!(
                "{}: markers of an endpoint are kept in a file: open it with --markers FILE",
                self.info().name
            ));
        };
        // It must be a position of this source.
        let pos = marker.position()?;
        self.inner
            .resolve(pos, false)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{}: past the last event", marker.position))?;
        let mut next = set.read().unwrap_or_else(|e| e.into_inner()).clone();
        next.put(marker);
        crate::archive::storage::write_replacing(path, next.to_json().as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        *set.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(path.display().to_string())
    }
}

/// The source's markers by the offset each stands for, in offset order. A marker whose
/// position is not in the source is an error naming it (none is skipped).
pub fn marker_offsets(source: &dyn Source) -> Result<Vec<(u64, Marker)>, SourceError> {
    let invalid = |message: String| SourceError::Invalid {
        source_name: source.info().name.clone(),
        message,
    };
    let mut out = Vec::new();
    for m in source.markers().markers {
        let pos = m
            .position()
            .map_err(|e| invalid(format!("marker {}: {e}", m.name)))?;
        match source.resolve(pos, false)? {
            Some(o) => out.push((o, m)),
            None => {
                return Err(invalid(format!(
                    "marker {} at {} is past the last event",
                    m.name, m.position
                )));
            }
        }
    }
    out.sort_by_key(|(o, _)| *o);
    Ok(out)
}
