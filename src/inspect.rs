//! Answers to the questions people open an inspector with (DESIGN.md section 12): how one key
//! changed ([`history`]), what changed inside a value ([`json_diff`]), which events mention something ([`search`]). The TUI and the headless
//! commands use the same code. No terminal or network types here.

use std::sync::Arc;

use crate::flow::CreditWindow;
use crate::source::{BatchStream, Filter, Source, SourceError, StreamRequest};

pub mod diff;
pub mod history;
pub mod json_diff;
pub mod search;
pub mod state_at;
pub mod window;

/// Events asked of the source per batch by a scan.
const SCAN_BATCH_EVENTS: usize = 1024;
/// Credit between a scan and its source.
const SCAN_WINDOW_BYTES: u64 = 16 * 1024 * 1024;

/// The stream a scan reads (`from`..=`until`, through `filter`) and the window it acks.
fn open_scan(
    source: &Arc<dyn Source>,
    from: u64,
    until: Option<u64>,
    filter: Filter,
    chain: crate::source::ChainCheck,
) -> Result<(BatchStream, CreditWindow), SourceError> {
    let window = CreditWindow::new(SCAN_WINDOW_BYTES);
    let stream = source.open(
        StreamRequest {
            from,
            until,
            filter,
            batch_events: SCAN_BATCH_EVENTS,
            chain,
            ..StreamRequest::default()
        },
        window.clone(),
    )?;
    Ok((stream, window))
}
