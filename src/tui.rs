//! The inspector TUI: a thin layer over the player. One biased `select!` loop over terminal
//! input, player updates and a frame interval (30 fps); updates are drained in bursts and drawing
//! happens at most once per frame, so ingestion never waits on drawing.

pub mod app;
pub mod config;
pub mod input;
pub mod theme;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{Event as TermEvent, EventStream};
use futures_util::StreamExt;
use ratatui::DefaultTerminal;
use tokio::sync::mpsc;

use crate::player::{
    self, Pace, PlayState, Played, PlayerError, PlayerOptions, Report, Sink, SinkError,
};
use crate::source::Source;
use crate::state::KvState;
use crate::state::folder::{FoldRequest, FoldView, Folder};
use app::{Model, Row, Update, ViewState};

/// Frame interval (30 fps).
pub const FRAME: Duration = Duration::from_millis(33);
/// Updates applied per loop turn before input is looked at again.
const UPDATE_BURST: usize = 50_000;
/// State checkpoints kept by the inspector's player.
const TUI_MAX_CHECKPOINTS: usize = 256;

/// The player's sink for the TUI: forwards every played event to the UI loop (the state is
/// folded by a [`Folder`], off the player's path).
struct TuiSink {
    updates: mpsc::UnboundedSender<Update>,
    /// Rows not handed to the UI yet (sent in batches: one wake-up of the UI per batch).
    rows: Vec<Row>,
}

/// Rows per batch sent to the UI.
const SINK_BATCH: usize = 1024;

impl TuiSink {
    fn flush(&mut self) {
        if !self.rows.is_empty() {
            // The UI may be gone (quitting); the player is stopped right after.
            let _ = self
                .updates
                .send(Update::Batch(std::mem::take(&mut self.rows)));
        }
    }
}

impl Sink for TuiSink {
    fn played(&mut self, p: &Played<'_>) -> Result<(), SinkError> {
        self.rows.push(Row {
            event: p.event.clone(),
            size: p.size,
            diff: p.diff.cloned(),
        });
        if self.rows.len() >= SINK_BATCH {
            self.flush();
        }
        Ok(())
    }

    fn idle(&mut self, _state: Option<&KvState>) {
        self.flush();
    }

    fn repositioned(&mut self, next_offset: u64, _state: Option<&KvState>) {
        self.flush();
        let _ = self.updates.send(Update::Repositioned {
            next_offset,
            state: None,
        });
    }

    fn run_ended(&mut self, report: &Report, _state: Option<&KvState>) {
        self.flush();
        let _ = self
            .updates
            .send(Update::RunEnded(Box::new(report.clone())));
    }
}

/// Another source to compare with (`open LEFT --against RIGHT`): it, and how to compare.
pub struct AgainstSpec {
    pub source: Arc<dyn Source>,
    pub request: crate::inspect::diff::DiffRequest,
}

/// How the screen is set up: the layout to start with and the user's settings.
#[derive(Debug, Clone, Default)]
pub struct Screen {
    pub layout: app::LayoutKind,
    pub config: config::UiConfig,
}

/// Two clicks on one cell within this are a double click.
const DOUBLE_CLICK: Duration = Duration::from_millis(400);

/// Runs the TUI on `terminal` until the user quits; returns the last run's report.
pub async fn run(
    terminal: &mut DefaultTerminal,
    source: Arc<dyn Source>,
    mut options: PlayerOptions,
    against: Option<AgainstSpec>,
    screen: Screen,
) -> Result<Report, PlayerError> {
    if screen.config.theme == config::Theme::Mono {
        crossterm::style::force_color_output(false);
    }
    options.exit_when_done = false;
    // The player only plays; the state is folded by its own task (off the ingestion path).
    options.track_state = false;
    let info = source.info().clone();
    let folder = Folder::spawn(
        source.clone(),
        options.filter.clone(),
        options.from.or(info.first_offset).unwrap_or(0),
        options.bootstrap.clone(),
        options.checkpoint_every,
        // Checkpoints hold the keys changed between them: bound how many are kept.
        options.max_checkpoints.min(TUI_MAX_CHECKPOINTS),
    );
    let mut folded = folder.view();
    let (tx, mut updates) = mpsc::unbounded_channel();
    let history_source = source.clone();
    let history_updates = tx.clone();
    let history_agent = options.filter.agent.clone();
    let rows_filter = options.filter.clone();
    let mut history_task: Option<tokio::task::JoinHandle<()>> = None;
    let mut rows_task: Option<tokio::task::JoinHandle<()>> = None;
    let mut search_task: Option<tokio::task::JoinHandle<()>> = None;
    let handle = player::spawn(
        source,
        options,
        Box::new(TuiSink {
            updates: tx,
            rows: Vec::with_capacity(SINK_BATCH),
        }),
    )?;
    let mut stats = handle.stats();
    let mut model = Model::new(info, stats.borrow().clone());
    refresh_markers(&mut model, history_source.as_ref());
    // The comparison runs over the whole sources in the background, like a search.
    let _against_task = against.map(|spec| {
        model.against = Some(app::Against {
            name: spec.source.info().name.clone(),
            ..Default::default()
        });
        AbortOnDrop(tokio::spawn(compare_against(
            history_source.clone(),
            spec,
            history_updates.clone(),
        )))
    });
    let mut view = ViewState {
        layout: screen.layout,
        ..ViewState::default()
    };
    let mut last_click: Option<(std::time::Instant, u16, u16)> = None;
    let mut input = EventStream::new();
    let mut frame = tokio::time::interval(FRAME);
    frame.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = true;
    let mut input_open = true;
    while !view.quit {
        tokio::select! {
            biased;
            ev = input.next(), if input_open => {
                match ev {
                    Some(Ok(ev)) => {
                        let mut action = match ev {
                            TermEvent::Key(k) => {
                                input::map_key(k, view.input_mode(), &screen.config.keys)
                            }
                            TermEvent::Mouse(m) => input::map_mouse(m),
                            TermEvent::Resize(..) => None,
                            _ => None,
                        };
                        // A second click on the same cell soon after the first: a double click.
                        if let Some(input::Action::Click { column, row, double }) = &mut action {
                            let now = std::time::Instant::now();
                            *double = last_click.is_some_and(|(t, c, r)| {
                                (c, r) == (*column, *row) && now.duration_since(t) <= DOUBLE_CLICK
                            });
                            last_click = (!*double).then_some((now, *column, *row));
                        }
                        if let Ok(size) = terminal.size() {
                            view.screen = (size.width, size.height);
                        }
                        if let Some(a) = action {
                            tracing::debug!(action = ?a, "key");
                            for c in app::handle(a, &mut model, &mut view) {
                                handle.send(c);
                            }
                        }
                        if let Some(key) = view.history_scan.take() {
                            if let Some(t) = history_task.take() {
                                t.abort();
                            }
                            history_task = Some(tokio::spawn(scan_history(
                                history_source.clone(),
                                key,
                                history_agent.clone(),
                                history_updates.clone(),
                            )));
                        } else if !view.history_open
                            && let Some(t) = history_task.take()
                        {
                            t.abort();
                        }
                        if let Some((id, query)) = view.search_scan.take() {
                            if let Some(t) = search_task.take() {
                                t.abort();
                            }
                            search_task = Some(tokio::spawn(scan_search(
                                history_source.clone(),
                                query,
                                id,
                                history_agent.clone(),
                                history_updates.clone(),
                            )));
                        } else if model.search.is_none()
                            && let Some(t) = search_task.take()
                        {
                            t.abort();
                        }
                        if let Some(text) = view.clipboard.take() {
                            copy_to_clipboard(&text);
                        }
                        if let Some(marker) = view.new_marker.take() {
                            let name = marker.name.clone();
                            match history_source.save_marker(marker) {
                                Ok(place) => {
                                    view.notice = Some(format!("marker {name} kept in {place}"));
                                    refresh_markers(&mut model, history_source.as_ref());
                                }
                                Err(e) => model.error = Some(format!("marker {name}: {e}")),
                            }
                        }
                        if view.layout_changed {
                            view.layout_changed = false;
                            if let Err(e) = screen.config.save_layout(view.layout) {
                                view.notice = Some(format!(
                                    "layout: {} (not remembered: {e})",
                                    view.layout.name()
                                ));
                            }
                        }
                        // Draw right away: a key press is shown without waiting for the frame tick.
                        draw(terminal, &model, &view);
                        dirty = false;
                    }
                    Some(Err(e)) => {
                        tracing::error!("terminal input failed: {e}");
                        input_open = false;
                        view.quit = true;
                    }
                    None => input_open = false,
                }
            }
            first = updates.recv() => {
                if let Some(u) = first {
                    apply_updates(Some(u), &mut updates, &mut model, &mut view, &handle);
                    dirty = true;
                }
            }
            changed = stats.changed() => {
                if changed.is_ok() {
                    // The events the player played before it published these stats were sent
                    // before them: shown first, so the screen never shows a state (paused, a
                    // step taken) ahead of the events it stands for.
                    apply_updates(None, &mut updates, &mut model, &mut view, &handle);
                    model.stats = stats.borrow_and_update().clone();
                    dirty = true;
                }
            }
            changed = folded.changed() => {
                if changed.is_ok() {
                    apply_fold(&mut model, &folded.borrow_and_update());
                    dirty = true;
                }
            }
            _ = frame.tick() => {
                if dirty {
                    draw(terminal, &model, &view);
                    dirty = false;
                }
            }
        }
        // Rows the table was scrolled to (or the context before a seek target) are read.
        if let Some(load) = model.take_row_load() {
            if let Some(t) = rows_task.take() {
                t.abort();
            }
            rows_task = Some(tokio::spawn(load_rows(
                history_source.clone(),
                rows_filter.clone(),
                load,
                history_updates.clone(),
            )));
        }
        folder.request(fold_request(&model, &view));
    }
    handle.send(player::Command::Quit);
    handle.join().await
}

/// Applies what the player has sent (`first`, then what waits, up to a burst so that keys stay
/// answered), and what follows from it.
fn apply_updates<S>(
    first: Option<Update>,
    updates: &mut mpsc::UnboundedReceiver<Update>,
    model: &mut Model,
    view: &mut ViewState,
    handle: &player::PlayerHandle<S>,
) {
    let waiting = std::iter::from_fn(|| updates.try_recv().ok());
    let mut applied = 0;
    for u in first.into_iter().chain(waiting).take(UPDATE_BURST) {
        model.apply(u);
        applied += 1;
    }
    if applied == 0 {
        return;
    }
    // A move past the rows held goes on once they are here.
    app::settle_scroll(model, view);
    // An `n` waiting for the scan: the matches it waited for may be here.
    if let Some((list, direction)) = view.search_jump {
        for c in app::search_jump(list, direction, model, view) {
            handle.send(c);
        }
    }
}

/// The source's markers and the offsets they stand for, into the model (a marker that does not
/// resolve is shown as the error).
fn refresh_markers(model: &mut Model, source: &dyn Source) {
    model.markers = source.markers();
    match crate::source::marked::marker_offsets(source) {
        Ok(m) => model.marker_offsets = m,
        Err(e) => model.error = Some(e.to_string()),
    }
}

/// A task stopped when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Divergences per update sent to the UI.
const AGAINST_BATCH: usize = 64;

/// Compares the source with another one in the background and hands what it finds to the UI.
async fn compare_against(
    left: Arc<dyn Source>,
    spec: AgainstSpec,
    updates: mpsc::UnboundedSender<Update>,
) {
    use crate::inspect::diff::{DiffProgress, diff};
    let mut found = Vec::new();
    let result = diff(&left, &spec.source, &spec.request, |p| match p {
        DiffProgress::Divergence(d) => {
            found.push(d.clone());
            found.len() < AGAINST_BATCH
                || updates
                    .send(Update::AgainstFound(std::mem::take(&mut found)))
                    .is_ok()
        }
        DiffProgress::Through(t) => {
            let batch = std::mem::take(&mut found);
            (batch.is_empty() || updates.send(Update::AgainstFound(batch)).is_ok())
                && updates.send(Update::AgainstThrough(t)).is_ok()
        }
    })
    .await;
    if !found.is_empty() {
        let _ = updates.send(Update::AgainstFound(found));
    }
    let _ = updates.send(Update::AgainstDone(
        result.map(|_| ()).map_err(|e| e.to_string()),
    ));
}

/// Reads rows for the table and hands them to the UI.
pub async fn load_rows(
    source: Arc<dyn Source>,
    filter: crate::source::Filter,
    load: app::RowLoad,
    updates: mpsc::UnboundedSender<Update>,
) {
    use crate::inspect::window;
    let rows = match load {
        app::RowLoad::Before { bound } => {
            window::before(&source, &filter, bound, app::LOAD_ROWS).await
        }
        app::RowLoad::After { from, until } => {
            window::after(&source, &filter, from, until, app::LOAD_ROWS).await
        }
    };
    let _ = updates.send(Update::Rows(load, rows.map_err(|e| e.to_string())));
}

/// Versions found per update sent to the UI.
const HISTORY_BATCH: usize = 64;

/// Scans the source for `key`'s versions and sends them to the UI as they are found.
async fn scan_history(
    source: Arc<dyn Source>,
    key: String,
    agent: Option<(String, String)>,
    updates: mpsc::UnboundedSender<Update>,
) {
    use crate::inspect::history::{HistoryRequest, scan};
    let first = source.info().first_offset.unwrap_or(0);
    let req = HistoryRequest {
        key: key.clone(),
        agent,
        from: first,
        until: None,
        chain: Default::default(),
    };
    let mut found = Vec::new();
    let result = scan(&source, &req, |v| {
        found.push(v.clone());
        if found.len() >= HISTORY_BATCH {
            let batch = std::mem::take(&mut found);
            return updates
                .send(Update::HistoryVersions(key.clone(), batch))
                .is_ok();
        }
        true
    })
    .await;
    if !found.is_empty() {
        let _ = updates.send(Update::HistoryVersions(key.clone(), found));
    }
    let _ = updates.send(Update::HistoryDone(
        key,
        result.map(|_| ()).map_err(|e| e.to_string()),
    ));
}

/// Puts `text` on the clipboard of the terminal the inspector runs in, through OSC 52 (over
/// ssh too). Inside tmux the sequence is sent as it is (taken with `set-clipboard on`) and
/// wrapped for passthrough (taken with `allow-passthrough on`).
fn copy_to_clipboard(text: &str) {
    use std::io::Write;
    let sequence = osc52(text);
    let mut out = std::io::stdout().lock();
    let mut written = out.write_all(sequence.as_bytes());
    if std::env::var_os("TMUX").is_some() {
        let wrapped = format!("\x1bPtmux;{}\x1b\\", sequence.replace('\x1b', "\x1b\x1b"));
        written = written.and_then(|()| out.write_all(wrapped.as_bytes()));
    }
    if let Err(e) = written.and_then(|()| out.flush()) {
        tracing::warn!("copying to the clipboard failed: {e}");
    }
}

/// The OSC 52 sequence that sets the clipboard to `text`.
pub fn osc52(text: &str) -> String {
    format!("\x1b]52;c;{}\x07", base64(text.as_bytes()))
}

/// Standard base64 with padding (RFC 4648).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Matches per update sent to the UI (at most; a batch of the source sends what it found).
const SEARCH_BATCH: usize = 256;

/// Searches the whole source for `query` and sends the offsets of its matches to the UI as
/// they are found.
async fn scan_search(
    source: Arc<dyn Source>,
    query: crate::inspect::search::Query,
    id: u64,
    agent: Option<(String, String)>,
    updates: mpsc::UnboundedSender<Update>,
) {
    use crate::inspect::search::{SearchRequest, scan_in_batches};
    let req = SearchRequest {
        from: source.info().first_offset.unwrap_or(0),
        until: None,
        agent,
        chain: Default::default(),
    };
    // Shared by the two callbacks (a Mutex, not a RefCell: the future moves between threads).
    let found = std::sync::Mutex::new(Vec::new());
    let lock = || found.lock().unwrap_or_else(|e| e.into_inner());
    let send = |found: &mut Vec<u64>| {
        found.is_empty()
            || updates
                .send(Update::SearchFound(id, std::mem::take(found)))
                .is_ok()
    };
    let result = scan_in_batches(
        &source,
        &query,
        &req,
        |e| {
            let mut f = lock();
            f.push(e.offset);
            f.len() < SEARCH_BATCH || send(&mut f)
        },
        |_| send(&mut lock()),
    )
    .await;
    send(&mut lock());
    let _ = updates.send(Update::SearchDone(
        id,
        result.map(|_| ()).map_err(|e| e.to_string()),
    ));
}

/// Where the folder should be: at the cursor, throttled while the player ingests at full speed,
/// with the diff of the selected row when the row has none.
fn fold_request(model: &Model, view: &ViewState) -> FoldRequest {
    let s = &model.stats;
    FoldRequest {
        through: model.position(),
        throttle: s.state == PlayState::Playing && (s.pace == Pace::Fast || s.rate > 20_000.0),
        diff_of: model
            .selected_row(view)
            .filter(|r| r.diff.is_none())
            .map(|r| r.event.offset),
    }
}

fn apply_fold(model: &mut Model, v: &FoldView) {
    model.folded = true;
    model.state = Some(v.state.clone());
    model.state_through = v.through;
    model.fold_paused = v.paused;
    model.worked_out_diff = v.diff.clone();
    if let Some(e) = &v.error
        && model.error.is_none()
    {
        model.error = Some(e.clone());
    }
}

fn draw(terminal: &mut DefaultTerminal, model: &Model, view: &ViewState) {
    if let Err(e) = terminal.draw(|f| view::render(f, model, view)) {
        tracing::error!("drawing failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_is_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(plain.as_bytes()), encoded);
        }
        assert_eq!(super::osc52("hi"), "\x1b]52;c;aGk=\x07");
    }
}
