//! The event table as a window over the source (DESIGN.md section 12): the rows before the first
//! one held, or after the last, read on demand from any source (an archive through its index, a
//! remote endpoint by a stream from an offset, a Statehouse daemon by a Replay range), so a few
//! thousand rows stay resident however far the table is scrolled.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::event::Event;
use crate::source::{Filter, Source, SourceError};

/// Events read for the table, in offset order, with their encoded sizes.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub events: Vec<(Arc<Event>, u32)>,
    /// Nothing passes the filter before the first of them (or, read forward, between the last
    /// of them and the bound asked for).
    pub reached_bound: bool,
}

/// Reads `from`..=`until` through `filter`, handing each event to `keep` until it says stop.
async fn read(
    source: &Arc<dyn Source>,
    filter: &Filter,
    from: u64,
    until: u64,
    mut keep: impl FnMut(Arc<Event>, u32) -> bool,
) -> Result<(), SourceError> {
    let (mut stream, window) = super::open_scan(
        source,
        from,
        Some(until),
        filter.clone(),
        Default::default(),
    )?;
    while let Some(batch) = stream.recv().await {
        let batch = batch?;
        if let Some(o) = batch.last_offset() {
            window.ack(o);
        }
        for (e, size) in batch.events {
            if !keep(e, size) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The last `count` events through `filter` before offset `before`. Reads back in growing
/// spans (a filter may pass few events), never holding more than `count`.
pub async fn before(
    source: &Arc<dyn Source>,
    filter: &Filter,
    before: u64,
    count: usize,
) -> Result<Rows, SourceError> {
    let first = source.info().first_offset.unwrap_or(0);
    let count = count.max(1);
    let mut span = count as u64;
    let mut found: VecDeque<(Arc<Event>, u32)> = VecDeque::with_capacity(count);
    let mut end = before;
    while end > first {
        let from = end.saturating_sub(span).max(first);
        let mut chunk: VecDeque<(Arc<Event>, u32)> = VecDeque::new();
        read(source, filter, from, end - 1, |e, size| {
            chunk.push_back((e, size));
            if chunk.len() > count {
                chunk.pop_front();
            }
            true
        })
        .await?;
        // What this span found goes before what later spans found.
        while let Some(row) = chunk.pop_back() {
            if found.len() >= count {
                break;
            }
            found.push_front(row);
        }
        if found.len() >= count {
            let reached_bound = found.front().is_some_and(|(e, _)| e.offset == first);
            return Ok(Rows {
                events: found.into(),
                reached_bound,
            });
        }
        end = from;
        span = span.saturating_mul(4);
    }
    Ok(Rows {
        events: found.into(),
        reached_bound: true,
    })
}

/// The first `count` events through `filter` from offset `from` up to `until` (inclusive).
pub async fn after(
    source: &Arc<dyn Source>,
    filter: &Filter,
    from: u64,
    until: u64,
    count: usize,
) -> Result<Rows, SourceError> {
    let mut events = Vec::with_capacity(count);
    if from <= until {
        read(source, filter, from, until, |e, size| {
            events.push((e, size));
            events.len() < count
        })
        .await?;
    }
    let reached_bound = events.len() < count
        || events
            .last()
            .is_some_and(|(e, _): &(Arc<Event>, u32)| e.offset >= until);
    Ok(Rows {
        events,
        reached_bound,
    })
}
