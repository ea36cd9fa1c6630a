//! The TUI's model (what the player reported: stats, recent events, the state at the cursor, the
//! report) and view state (selection, focus, prompts, overlays), and how actions change them.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::event::{Event, Position};
use crate::player::{Command, PlayState, Report, SeekTarget, Stats};
use crate::source::SourceInfo;
use crate::state::{Diff, KvState};
use crate::tui::input::{Action, InputMode};

/// Rows the table holds at most (a window over the source: more are read as it is scrolled).
pub const MAX_ROWS: usize = 5000;
/// Rows read at a time when the table is scrolled past what it holds (and the context kept
/// before a seek target).
pub const LOAD_ROWS: usize = 1000;
/// How close to the first (or last) row held a move starts reading the next ones.
const PREFETCH_ROWS: usize = 300;

/// Rows to read from the source for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowLoad {
    /// The last rows before offset `bound`.
    Before { bound: u64 },
    /// The first rows from offset `from` through `until`.
    After { from: u64, until: u64 },
}

/// The table as a window over the source: what it holds and what it is reading.
#[derive(Debug, Clone, Default)]
pub struct RowWindow {
    /// The rows do not end at the last event played (the table was scrolled back past what
    /// it holds with them): played rows are not added until it comes back (End).
    pub detached: bool,
    /// Nothing (through the player's filter) comes before the first row held.
    pub at_start: bool,
    /// A read asked for and not arrived yet (one at a time).
    pub pending: Option<RowLoad>,
    /// A read to start (taken by the UI loop).
    pub wanted: Option<RowLoad>,
    /// Rows the selection still has to move (negative: up) once the rows being read arrive:
    /// key presses past the rows held are not lost.
    pub owed: i64,
}

/// One played event as the table holds it.
#[derive(Debug, Clone)]
pub struct Row {
    pub event: Arc<Event>,
    pub size: u32,
    pub diff: Option<Arc<Diff>>,
}

/// What the player tells the TUI (sent by its sink).
#[derive(Debug)]
pub enum Update {
    Played {
        row: Row,
        state: Option<KvState>,
    },
    /// Several played events at once (the state is shared separately).
    Batch(Vec<Row>),
    /// Rows read from the source for the table (`Err`: why not).
    Rows(RowLoad, Result<crate::inspect::window::Rows, String>),
    Repositioned {
        next_offset: u64,
        state: Option<KvState>,
    },
    RunEnded(Box<Report>),
    /// Versions a key history scan found (for the key named).
    HistoryVersions(String, Vec<crate::inspect::history::Version>),
    /// The key history scan is over (`Err`: why it stopped).
    HistoryDone(String, Result<(), String>),
    /// Matches a search of the whole source found (for the search with this id), in offset
    /// order.
    SearchFound(u64, Vec<u64>),
    /// The search of the whole source is over (`Err`: why it stopped).
    SearchDone(u64, Result<(), String>),
    /// Divergences the comparison with `--against` found, in order.
    AgainstFound(Vec<crate::inspect::diff::Divergence>),
    /// The comparison is through this left offset.
    AgainstThrough(u64),
    /// The comparison is over (`Err`: why it stopped).
    AgainstDone(Result<(), String>),
}

/// Data from the player.
#[derive(Debug, Clone)]
pub struct Model {
    pub source: SourceInfo,
    pub stats: Stats,
    /// The rows the table holds: a window over the source, normally ending at the last event
    /// played.
    pub rows: VecDeque<Row>,
    pub window: RowWindow,
    /// The offset of the last event played (None: none since the last jump).
    pub played: Option<u64>,
    /// The state shown (the folder's: at the cursor, or behind it while it catches up).
    pub state: Option<KvState>,
    /// The state comes from the folder, which has folded through `state_through` (None:
    /// nothing yet); otherwise it is the state at the cursor.
    pub folded: bool,
    pub state_through: Option<u64>,
    /// The folder holds off while the player ingests at full speed.
    pub fold_paused: bool,
    /// The diff of a transaction worked out on request (rows do not carry one).
    pub worked_out_diff: Option<Arc<Diff>>,
    pub report: Option<Report>,
    /// An error to show in a banner until dismissed.
    pub error: Option<String>,
    /// The key history being shown (or scanned for).
    pub history: Option<KeyHistory>,
    /// The search of the whole source (`/` then Enter).
    pub search: Option<SourceSearch>,
    /// `open LEFT --against RIGHT`: where the other source disagrees.
    pub against: Option<Against>,
    /// The source's markers (`mark:NAME` in the seek prompt; `{` `}` and `'` go to them).
    pub markers: crate::event::marker::MarkerSet,
    /// The markers by the offset each resolves to, in offset order.
    pub marker_offsets: Vec<(u64, crate::event::marker::Marker)>,
}

/// The comparison with another source (`--against`), filled by a background diff of the whole
/// sources in offset order.
#[derive(Debug, Clone, Default)]
pub struct Against {
    /// How the other source is named.
    pub name: String,
    /// The rows (left offsets) where the sides disagree; `D` steps through them like `n`
    /// through a search.
    pub divergences: SourceSearch,
    /// What differs at each of them.
    pub details: std::collections::BTreeMap<u64, crate::inspect::diff::Divergence>,
    /// Every row up to this offset is compared.
    pub through: Option<u64>,
}

/// How a row compares with the other source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agreement {
    Agrees,
    Differs,
    /// Not compared yet.
    Unknown,
}

impl Against {
    pub fn agreement(&self, offset: u64) -> Agreement {
        if self.details.contains_key(&offset) {
            Agreement::Differs
        } else if self.through.is_some_and(|t| offset <= t) {
            Agreement::Agrees
        } else {
            Agreement::Unknown
        }
    }

    /// The header's line: how many rows disagree and how far the comparison is.
    pub fn status(&self) -> String {
        let n = self.divergences.matches.len() as u64;
        let mut s = format!(
            "against {}: {}",
            self.name,
            match n {
                0 => "no divergence".to_string(),
                _ => crate::text::count(n, "divergence", "divergences"),
            }
        );
        if let Some(e) = &self.divergences.error {
            s.push_str(&format!(" (stopped: {e})"));
        } else if !self.divergences.done {
            match self.through {
                Some(t) => s.push_str(&format!(
                    " so far (compared through #{})",
                    crate::text::thousands(t)
                )),
                None => s.push_str(" so far (comparing…)"),
            }
        }
        if let Some(note) = &self.divergences.note {
            s.push_str(&format!(": {note}"));
        }
        s
    }
}

/// What `n` / `N` (the search's matches) or `D` (the divergences from `--against`) step
/// through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JumpList {
    Search,
    Divergences,
}

/// Which way `n` / `N` go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchDirection {
    Forward,
    Backward,
}

/// A search of the whole source, filled by a background scan in offset order.
#[derive(Debug, Clone, Default)]
pub struct SourceSearch {
    /// Which search this is (updates of an earlier scan, still queued, are not its own).
    pub id: u64,
    pub text: String,
    /// Offsets of the matching events found so far, ascending.
    pub matches: Vec<u64>,
    /// The scan is over (with the error that ended it, if any).
    pub done: bool,
    pub error: Option<String>,
    /// What the last `n` / `N` said (no further match, wrapped around).
    pub note: Option<String>,
}

/// Where `n` / `N` go from `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchStep {
    To {
        offset: u64,
        wrapped: bool,
    },
    /// Not known yet: the scan has not got far enough.
    Scanning,
    None,
}

impl SourceSearch {
    /// The next match after `from` (or the previous one before it), wrapping around once the
    /// whole source is scanned.
    pub fn step(&self, from: Option<u64>, direction: SearchDirection) -> SearchStep {
        let m = &self.matches;
        let at = from.map(|f| m.partition_point(|&o| o <= f));
        let found = match (direction, at) {
            (SearchDirection::Forward, None) => m.first().copied(),
            (SearchDirection::Forward, Some(i)) => m.get(i).copied(),
            (SearchDirection::Backward, None) => None,
            (SearchDirection::Backward, Some(i)) => {
                // A match before the cursor is the nearest only once the scan is past it.
                let before = from.map_or(i, |f| m.partition_point(|&o| o < f));
                // (a match at or after the cursor: the scan is past everything before it)
                let known = self.done || before < m.len();
                match before.checked_sub(1) {
                    Some(j) if known => m.get(j).copied(),
                    _ if !known => return SearchStep::Scanning,
                    _ => None,
                }
            }
        };
        match found {
            Some(offset) => SearchStep::To {
                offset,
                wrapped: false,
            },
            None if !self.done => SearchStep::Scanning,
            None => {
                let wrap = match direction {
                    SearchDirection::Forward => m.first(),
                    SearchDirection::Backward => m.last(),
                };
                match wrap {
                    Some(&offset) => SearchStep::To {
                        offset,
                        wrapped: true,
                    },
                    None => SearchStep::None,
                }
            }
        }
    }

    /// The progress line: how many matches, whether the scan goes on.
    pub fn status(&self) -> String {
        let n = self.matches.len();
        let count = match n {
            0 => "no match".to_string(),
            1 => "1 match".to_string(),
            _ => format!("{} matches", crate::text::thousands(n as u64)),
        };
        let mut s = format!("search \"{}\": {count}", self.text);
        if let Some(e) = &self.error {
            s.push_str(&format!(" (stopped: {e})"));
        } else if !self.done {
            s.push_str(" so far, scanning the source…");
        } else if n > 0 {
            s.push_str(" in the source (n next, N previous)");
        }
        if let Some(note) = &self.note {
            s.push_str(&format!(" · {note}"));
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Table,
    Detail,
    State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PromptKind {
    Seek,
    Resume,
    Filter,
    History,
    /// A marker at the cursor: its name, then its caption.
    Marker,
    /// Text to find in the full-value view.
    Find,
}

/// A whole value, pretty-printed, as the full-value view shows it (Enter on a pane).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValueView {
    /// What it is: `transaction #59`, `state at #59`.
    pub title: String,
    /// The pretty JSON (what `y` copies).
    pub text: String,
    pub lines: Vec<String>,
    /// The first line shown.
    pub scroll: usize,
    /// What `/` looks for in it, and the line it was last found on.
    pub find: Option<String>,
    pub found_line: Option<usize>,
}

impl ValueView {
    pub fn new(title: String, value: &serde_json::Value) -> ValueView {
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        ValueView {
            title,
            lines: text.lines().map(str::to_string).collect(),
            text,
            ..ValueView::default()
        }
    }

    /// Moves to the next (or previous) line holding the text found, wrapping around.
    fn find_step(&mut self, direction: SearchDirection, from_here: bool) -> bool {
        let Some(needle) = self.find.as_deref() else {
            return false;
        };
        let n = self.lines.len();
        let start = self.found_line.unwrap_or(self.scroll);
        let hit = (0..n)
            .map(|i| match direction {
                SearchDirection::Forward if from_here => (start + i) % n,
                SearchDirection::Forward => (start + 1 + i) % n,
                SearchDirection::Backward => (start + n - 1 - i % n) % n,
            })
            .find(|&i| self.lines[i].contains(needle));
        self.found_line = hit;
        // At the top: the rows above it may wrap to more than the view holds.
        if let Some(i) = hit {
            self.scroll = i;
        }
        hit.is_some()
    }
}

/// A key's history as the overlay shows it, filled by a background scan of the source.
#[derive(Debug, Clone, Default)]
pub struct KeyHistory {
    pub key: String,
    pub versions: Vec<crate::inspect::history::Version>,
    /// The scan is over (with the error that ended it, if any).
    pub done: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub kind: PromptKind,
    pub input: String,
    /// Inline validation of the current input.
    pub error: Option<String>,
    /// Where the cursor is, in characters from the start.
    pub cursor: usize,
    /// Which history entry is shown (`None`: what is being typed).
    pub recalled: Option<usize>,
}

impl Prompt {
    pub fn new(kind: PromptKind, input: String) -> Prompt {
        let cursor = input.chars().count();
        Prompt {
            kind,
            input,
            error: None,
            cursor,
            recalled: None,
        }
    }

    /// The byte index of character `n`.
    fn at(&self, n: usize) -> usize {
        self.input
            .char_indices()
            .nth(n)
            .map_or(self.input.len(), |(i, _)| i)
    }

    fn insert(&mut self, c: char) {
        let i = self.at(self.cursor);
        self.input.insert(i, c);
        self.cursor += 1;
    }

    fn backspace(&mut self) {
        if self.cursor > 0 {
            let i = self.at(self.cursor - 1);
            self.input.remove(i);
            self.cursor -= 1;
        }
    }

    /// Applies a shell-like edit; `history` is this prompt's earlier entries, oldest first.
    fn edit(&mut self, e: crate::tui::input::LineEdit, history: &[String]) {
        use crate::tui::input::LineEdit;
        let len = self.input.chars().count();
        match e {
            LineEdit::Left => self.cursor = self.cursor.saturating_sub(1),
            LineEdit::Right => self.cursor = (self.cursor + 1).min(len),
            LineEdit::Home => self.cursor = 0,
            LineEdit::End => self.cursor = len,
            LineEdit::Delete => {
                if self.cursor < len {
                    let i = self.at(self.cursor);
                    self.input.remove(i);
                }
            }
            LineEdit::KillToStart => {
                let i = self.at(self.cursor);
                self.input.replace_range(..i, "");
                self.cursor = 0;
            }
            LineEdit::KillWord => {
                let chars: Vec<char> = self.input.chars().collect();
                let mut start = self.cursor;
                while start > 0 && chars[start - 1].is_whitespace() {
                    start -= 1;
                }
                while start > 0 && !chars[start - 1].is_whitespace() {
                    start -= 1;
                }
                let (a, b) = (self.at(start), self.at(self.cursor));
                self.input.replace_range(a..b, "");
                self.cursor = start;
            }
            LineEdit::Older | LineEdit::Newer => {
                if history.is_empty() {
                    return;
                }
                let next = match (e, self.recalled) {
                    (LineEdit::Older, None) => Some(history.len() - 1),
                    (LineEdit::Older, Some(i)) => Some(i.saturating_sub(1)),
                    (_, Some(i)) if i + 1 < history.len() => Some(i + 1),
                    // ↓ with nothing recalled keeps what is typed.
                    (_, None) => return,
                    _ => None,
                };
                self.recalled = next;
                self.input = next.map(|i| history[i].clone()).unwrap_or_default();
                self.cursor = self.input.chars().count();
            }
        }
    }
}

/// UI state, separate from the data.
#[derive(Debug, Clone)]
pub struct ViewState {
    /// Selected event offset; `None` follows the newest row.
    pub selected: Option<u64>,
    pub focus: Focus,
    pub prompt: Option<Prompt>,
    pub help: bool,
    /// The table is frozen at this offset (playback goes on; newer rows are counted).
    pub frozen_at: Option<u64>,
    /// Table filter: what the search prompt holds (keys, values, agent, txn_id prefix).
    pub filter: Option<String>,
    pub filter_query: Option<crate::inspect::search::Query>,
    /// What was submitted in each prompt, oldest first (↑ recalls it).
    pub history: std::collections::HashMap<PromptKind, Vec<String>>,
    pub detail_scroll: u16,
    pub state_scroll: u16,
    pub quit: bool,
    /// The key history overlay is open, on this version (index).
    pub history_open: bool,
    pub history_selected: usize,
    /// A key history scan to start (taken by the UI loop, which owns the source).
    pub history_scan: Option<String>,
    /// A search of the whole source to start (taken by the UI loop).
    pub search_scan: Option<(u64, crate::inspect::search::Query)>,
    /// Searches started so far (each one's id).
    pub searches: u64,
    /// The table filter before the search prompt opened (Esc puts it back).
    pub filter_before: Option<String>,
    /// An `n` / `N` waiting for the scan to get far enough.
    pub search_jump: Option<(JumpList, SearchDirection)>,
    /// The full-value view.
    pub value: Option<ValueView>,
    /// Text to put on the clipboard (taken by the UI loop, which writes OSC 52).
    pub clipboard: Option<String>,
    /// A one-line confirmation in the header (cleared by the next key).
    pub notice: Option<String>,
    /// `m`: the state marked, and after which offset (None: the start state, before any
    /// event); the state diff `d` compares it with the cursor's.
    pub mark: Option<(Option<u64>, KvState)>,
    /// The screen's layout (`v` cycles; remembered by the UI loop when `layout_changed`).
    pub layout: LayoutKind,
    pub layout_changed: bool,
    /// The list of markers is open, on this one.
    pub markers_open: bool,
    pub markers_selected: usize,
    /// A marker to keep beside the source (taken by the UI loop, which owns the source).
    pub new_marker: Option<crate::event::marker::Marker>,
    /// `A`: the start of an A-B loop (B sets its end).
    pub loop_a: Option<u64>,
    /// The terminal's size (columns, rows), for placing clicks.
    pub screen: (u16, u16),
}

/// The screen's layout (DESIGN.md section 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayoutKind {
    /// The table, the transaction and the state; the transport gauges folded into one line.
    #[default]
    Inspect,
    /// Everything, with the transport gauges in full.
    Transport,
    /// For an audience: a large table and the caption of the current marker, no key hints.
    Present,
}

impl LayoutKind {
    pub const ALL: [LayoutKind; 3] = [
        LayoutKind::Inspect,
        LayoutKind::Transport,
        LayoutKind::Present,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LayoutKind::Inspect => "inspect",
            LayoutKind::Transport => "transport",
            LayoutKind::Present => "present",
        }
    }

    pub fn parse(s: &str) -> Option<LayoutKind> {
        LayoutKind::ALL.into_iter().find(|l| l.name() == s)
    }

    pub fn next(self) -> LayoutKind {
        match self {
            LayoutKind::Inspect => LayoutKind::Transport,
            LayoutKind::Transport => LayoutKind::Present,
            LayoutKind::Present => LayoutKind::Inspect,
        }
    }
}

impl Default for ViewState {
    fn default() -> Self {
        ViewState {
            selected: None,
            focus: Focus::Table,
            prompt: None,
            help: false,
            frozen_at: None,
            filter: None,
            filter_query: None,
            history: Default::default(),
            detail_scroll: 0,
            state_scroll: 0,
            quit: false,
            history_open: false,
            history_selected: 0,
            history_scan: None,
            search_scan: None,
            searches: 0,
            filter_before: None,
            search_jump: None,
            value: None,
            clipboard: None,
            notice: None,
            mark: None,
            layout: LayoutKind::default(),
            layout_changed: false,
            markers_open: false,
            markers_selected: 0,
            new_marker: None,
            loop_a: None,
            screen: (0, 0),
        }
    }
}

impl ViewState {
    pub fn input_mode(&self) -> InputMode {
        if self.prompt.is_some() {
            InputMode::Prompt
        } else if self.markers_open {
            InputMode::Markers
        } else if self.value.is_some() {
            InputMode::Value
        } else if self.history_open {
            InputMode::History
        } else if self.help {
            InputMode::Help
        } else {
            InputMode::Normal
        }
    }
}

impl Model {
    pub fn new(source: SourceInfo, stats: Stats) -> Model {
        Model {
            source,
            stats,
            rows: VecDeque::new(),
            window: RowWindow::default(),
            played: None,
            state: None,
            folded: false,
            state_through: None,
            fold_paused: false,
            worked_out_diff: None,
            report: None,
            error: None,
            history: None,
            search: None,
            against: None,
            markers: Default::default(),
            marker_offsets: Vec::new(),
        }
    }

    /// The marker at or before the cursor (its caption is what the present layout shows).
    pub fn marker_here(&self) -> Option<&(u64, crate::event::marker::Marker)> {
        let p = self.position()?;
        self.marker_offsets.iter().rev().find(|(o, _)| *o <= p)
    }

    /// The marker the player is paused at (`--pause-at-markers`).
    pub fn paused_at_marker(&self) -> Option<&crate::event::marker::Marker> {
        let o = self.stats.at_marker?;
        self.marker_offsets
            .iter()
            .find(|(m, _)| *m == o)
            .map(|(_, m)| m)
    }

    /// What the selected transaction changed: its own diff, or the one worked out for it.
    pub fn selected_diff(&self, view: &ViewState) -> Option<Arc<Diff>> {
        let row = self.selected_row(view)?;
        row.diff.clone().or_else(|| {
            self.worked_out_diff
                .clone()
                .filter(|d| d.offset == row.event.offset)
        })
    }

    /// How many offsets the state shown is behind the cursor (0: at it).
    pub fn state_behind(&self) -> u64 {
        if !self.folded {
            return 0;
        }
        match (self.state_through, self.position()) {
            (Some(t), Some(p)) => p.saturating_sub(t),
            (None, Some(p)) => (p + 1).saturating_sub(self.source.first_offset.unwrap_or(0)),
            _ => 0,
        }
    }

    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Batch(rows) => {
                for row in rows {
                    self.apply(Update::Played { row, state: None });
                }
            }
            Update::Played { row, state } => {
                if self.report.is_some() && self.stats.state != PlayState::Stopped {
                    self.report = None;
                }
                self.played = Some(row.event.offset);
                if !self.window.detached {
                    // Keep rows in offset order (a step back replays rows we already hold).
                    while self
                        .rows
                        .back()
                        .is_some_and(|r| r.event.offset >= row.event.offset)
                    {
                        self.rows.pop_back();
                    }
                    self.rows.push_back(row);
                    if self.rows.len() > MAX_ROWS {
                        self.rows.pop_front();
                        self.window.at_start = false;
                    }
                }
                if state.is_some() {
                    self.state = state;
                }
            }
            Update::Repositioned { next_offset, state } => {
                self.played = self
                    .played
                    .filter(|&p| p < next_offset && p + 1 >= next_offset);
                if !self.window.detached {
                    while self
                        .rows
                        .back()
                        .is_some_and(|r| r.event.offset >= next_offset)
                    {
                        self.rows.pop_back();
                    }
                    // A jump forward: the rows held are no longer the history just before the
                    // cursor.
                    if self
                        .rows
                        .back()
                        .is_some_and(|r| r.event.offset + 1 < next_offset)
                    {
                        self.rows.clear();
                    }
                    // The rows before the new position are read, so they stay scrollable.
                    if self.rows.is_empty() {
                        self.window.at_start = false;
                        self.want_rows(RowLoad::Before { bound: next_offset });
                    }
                }
                if state.is_some() {
                    self.state = state;
                }
                self.report = None;
            }
            Update::Rows(load, rows) => self.take_rows(load, rows),
            Update::HistoryVersions(key, versions) => {
                if let Some(h) = self.history.as_mut().filter(|h| h.key == key) {
                    h.versions.extend(versions);
                }
            }
            Update::SearchFound(id, found) => {
                if let Some(s) = self.search.as_mut().filter(|s| s.id == id) {
                    s.matches.extend(found);
                }
            }
            Update::SearchDone(id, result) => {
                if let Some(s) = self.search.as_mut().filter(|s| s.id == id) {
                    s.done = true;
                    s.error = result.err();
                }
            }
            Update::AgainstFound(found) => {
                if let Some(a) = self.against.as_mut() {
                    for d in found {
                        if a.divergences.matches.last() != Some(&d.at_left) {
                            a.divergences.matches.push(d.at_left);
                        }
                        a.details.entry(d.at_left).or_insert(d);
                    }
                }
            }
            Update::AgainstThrough(t) => {
                if let Some(a) = self.against.as_mut() {
                    a.through = Some(t);
                }
            }
            Update::AgainstDone(result) => {
                if let Some(a) = self.against.as_mut() {
                    a.divergences.done = true;
                    a.divergences.error = result.err();
                }
            }
            Update::HistoryDone(key, result) => {
                if let Some(h) = self.history.as_mut().filter(|h| h.key == key) {
                    h.done = true;
                    h.error = result.err();
                }
            }
            Update::RunEnded(report) => {
                if report.outcome.is_failed() {
                    self.error = report.reason.clone();
                }
                self.report = Some(*report);
            }
        }
    }

    /// Asks for rows (unless a read is on its way).
    fn want_rows(&mut self, load: RowLoad) {
        if self.window.pending.is_none() {
            self.window.wanted = Some(load);
        }
    }

    /// The UI loop starts this read.
    pub fn take_row_load(&mut self) -> Option<RowLoad> {
        let load = self.window.wanted.take()?;
        self.window.pending = Some(load);
        Some(load)
    }

    /// Rows read for the table arrive: they join the window where they fit (a window that
    /// changed meanwhile at that end drops them).
    fn take_rows(&mut self, load: RowLoad, rows: Result<crate::inspect::window::Rows, String>) {
        // A read asked for before the window was reset (End, Home) is dropped.
        if self.window.pending != Some(load) {
            return;
        }
        self.window.pending = None;
        let rows = match rows {
            Ok(r) => r,
            Err(e) => {
                self.error = Some(format!("reading rows for the table: {e}"));
                return;
            }
        };
        let fresh = rows.events.into_iter().map(|(event, size)| Row {
            event,
            size,
            diff: None,
        });
        match load {
            RowLoad::Before { bound } => {
                let fits = match self.rows.front() {
                    Some(r) => r.event.offset == bound,
                    // Nothing held: the rows must end before the next one played.
                    None => self.window.detached || self.played.is_none_or(|p| p < bound),
                };
                if !fits {
                    return;
                }
                for row in fresh.rev() {
                    self.rows.push_front(row);
                }
                self.window.at_start = rows.reached_bound;
                if self.rows.len() > MAX_ROWS {
                    self.rows.truncate(MAX_ROWS);
                    self.window.detached = true;
                }
            }
            RowLoad::After { from, until } => {
                let fits = match self.rows.back() {
                    Some(r) => r.event.offset < from,
                    None => true,
                };
                if !fits || !self.window.detached {
                    return;
                }
                let was_empty = self.rows.is_empty();
                self.rows.extend(fresh);
                if was_empty {
                    let first = self.source.first_offset.unwrap_or(0);
                    self.window.at_start = from <= first;
                }
                while self.rows.len() > MAX_ROWS {
                    self.rows.pop_front();
                    self.window.at_start = false;
                }
                // Back at the last event played: played rows are added again.
                let last = self.rows.back().map(|r| r.event.offset);
                if rows.reached_bound
                    && self
                        .played
                        .is_none_or(|p| last.is_none_or(|l| l >= p) && until >= p)
                {
                    self.window.detached = false;
                }
            }
        }
    }

    /// Rows the table shows (frozen / filtered).
    pub fn visible_rows<'a>(&'a self, view: &'a ViewState) -> impl Iterator<Item = &'a Row> + 'a {
        self.rows
            .iter()
            .filter(move |r| view.frozen_at.is_none_or(|f| r.event.offset <= f))
            .filter(move |r| {
                view.filter_query
                    .as_ref()
                    .is_none_or(|q| q.matches(&r.event))
            })
    }

    /// The offset the state shown is at (the folder's, or the cursor; None: the start state,
    /// before any event).
    pub fn state_offset(&self) -> Option<u64> {
        if self.folded {
            self.state_through
        } else {
            self.position()
        }
    }

    /// The offset of the last event played: the newest row (rows arrive as events are played;
    /// the stats snapshot lags them by up to its interval).
    pub fn position(&self) -> Option<u64> {
        self.played.or(self.stats.position)
    }

    /// Events played after the frozen point.
    pub fn pending(&self, view: &ViewState) -> u64 {
        match (view.frozen_at, self.position()) {
            (Some(f), Some(p)) if p > f => p - f,
            _ => 0,
        }
    }

    /// The row the detail pane shows: the selection (or the first visible row after it, when a
    /// filter hides it), else the newest visible row.
    pub fn selected_row<'a>(&'a self, view: &'a ViewState) -> Option<&'a Row> {
        match view.selected {
            Some(o) => self.visible_rows(view).find(|r| r.event.offset >= o),
            None => self.visible_rows(view).last(),
        }
    }

    /// The offset range of the source (clamped to what it holds).
    /// What the source holds as far as seeks and resumes are checked: a followed source's last
    /// offset is its moving head, and its last commit_ts and time are not known.
    pub fn bounds(&self) -> SourceInfo {
        let mut b = self.source.clone();
        if self.stats.following {
            b.last_offset = self.stats.head_offset;
            b.last_commit_ts = None;
            b.last_time_ns = None;
        }
        b
    }

    /// The source's offsets, first to last; a followed source's last is its moving head.
    pub fn range(&self) -> Option<(u64, u64)> {
        let last = match self.stats.head_offset {
            Some(h) if self.stats.following => Some(h),
            _ => self.source.last_offset,
        };
        Some((self.source.first_offset?, last?))
    }

    /// The next offset a resume would start from.
    pub fn resume_offset(&self) -> u64 {
        self.report
            .as_ref()
            .and_then(|r| r.next_offset)
            .or(self.position().map(|p| p + 1))
            .unwrap_or(self.stats.next_offset)
    }
}

/// Parses what the user typed at the seek prompt, checking it against the source's range.
pub fn parse_seek(
    input: &str,
    source: &SourceInfo,
    current: Option<u64>,
) -> Result<SeekTarget, String> {
    let t = input.trim();
    if t.is_empty() {
        return Err("type an offset, @commit_ts, an RFC 3339 time, NN% or +N/-N".into());
    }
    if let Some(p) = t.strip_suffix('%') {
        let pct: f64 = p
            .trim()
            .parse()
            .map_err(|_| format!("{t:?} is not a percentage"))?;
        if !(0.0..=100.0).contains(&pct) {
            return Err(format!("{pct}% is not between 0 and 100"));
        }
        return Ok(SeekTarget::Percent(pct));
    }
    if let Some(rest) = t
        .strip_prefix('+')
        .or_else(|| t.strip_prefix('-').filter(|r| !r.is_empty()))
    {
        let n: i64 = rest
            .parse()
            .ok()
            .filter(|_| !rest.starts_with(['+', '-']))
            .ok_or_else(|| format!("{t:?} is not a relative move"))?;
        let d = if t.starts_with('-') { -n } else { n };
        // Past the range is an error, as for an absolute offset.
        if let (Some(f), Some(l), Some(c)) = (source.first_offset, source.last_offset, current) {
            let to = i128::from(c) + i128::from(d);
            if to < i128::from(f) || to > i128::from(l) {
                return Err(format!(
                    "{t} from offset {c} is offset {to}, outside offsets {f} to {l}"
                ));
            }
        }
        return Ok(SeekTarget::Relative(d));
    }
    // The table's own time of day (`09:10:00`): that time on the day the source starts.
    if let Some(ns) = time_of_day(t, source) {
        return parse_seek(&crate::event::format_time_ns(ns), source, current);
    }
    let pos: Position = t
        .parse()
        .map_err(|e: crate::event::PositionParseError| e.to_string())?;
    match &pos {
        &Position::Offset(o) => {
            if let (Some(f), Some(l)) = (source.first_offset, source.last_offset)
                && (o < f || o > l)
            {
                return Err(format!("offset {o} is outside offsets {f} to {l}"));
            }
        }
        // Expanded by the caller from the source's markers ([`expand_marker`]).
        Position::Marker(name) => return Err(format!("no marker {name:?}")),
        &Position::CommitTs(ts) => {
            if let (Some(f), Some(l)) = (source.first_commit_ts, source.last_commit_ts)
                && (ts < f || ts > l)
            {
                return Err(format!("@{ts} is outside @{f} to @{l}"));
            }
        }
        &Position::Time(ns) => match (source.first_time_ns, source.last_time_ns) {
            (Some(f), Some(l)) if ns < f || ns > l => {
                return Err(format!(
                    "{} is outside {} to {}",
                    crate::event::format_time_ns(ns),
                    crate::event::format_time_ns(f),
                    crate::event::format_time_ns(l)
                ));
            }
            (None, _) => {
                return Err(
                    "this source has no wall-clock times; use an offset or @commit_ts".into(),
                );
            }
            _ => {}
        },
    }
    Ok(SeekTarget::Position(pos))
}

fn parse_resume(input: &str, source: &SourceInfo) -> Result<u64, String> {
    let o: u64 = input
        .trim()
        .parse()
        .map_err(|_| format!("{:?} is not an offset", input.trim()))?;
    match (source.first_offset, source.last_offset) {
        (Some(f), Some(l)) if o < f || o > l => {
            Err(format!("offset {o} is outside offsets {f} to {l}"))
        }
        _ => Ok(o),
    }
}

/// Enter on a pane: the whole of what it shows, pretty-printed — the selected transaction (from
/// the table or the transaction pane), or the whole state at the cursor (from the state pane, in
/// the `--bootstrap` format, so a copy can seed a replay).
fn open_value(model: &mut Model, view: &mut ViewState) {
    let opened = match view.focus {
        Focus::State => match &model.state {
            Some(state) => {
                let at = point_label(model.state_offset());
                state
                    .to_bootstrap_json()
                    .map(|v| ValueView::new(format!("state at {at}"), &v))
                    .map_err(|e| format!("the state cannot be shown: {e}"))
            }
            None => Err("no state yet".to_string()),
        },
        Focus::Table | Focus::Detail => match model.selected_row(view) {
            Some(row) => serde_json::to_value(row.event.as_ref())
                .map(|v| ValueView::new(format!("transaction #{}", row.event.offset), &v))
                .map_err(|e| format!("transaction #{}: {e}", row.event.offset)),
            None => Err("no transaction to show yet".to_string()),
        },
    };
    match opened {
        Ok(v) => view.value = Some(v),
        Err(e) => view.notice = Some(e),
    }
}

/// `#N` after offset N, or the start (before any event).
fn point_label(at: Option<u64>) -> String {
    at.map_or_else(|| "the start".to_string(), |o| format!("#{o}"))
}

/// `d`: what changed between the marked state and the state at the cursor, key by key and
/// field by field, in the full-value view (`y` copies it as JSON Lines).
fn open_state_diff(model: &Model, view: &mut ViewState) {
    let Some((mark, marked)) = &view.mark else {
        view.notice = Some("m first: mark a state to compare the cursor's with".into());
        return;
    };
    let Some(state) = &model.state else {
        view.notice = Some("no state yet".into());
        return;
    };
    let at = model.state_offset();
    // Oldest first, whichever side the mark is on (the start before any offset).
    let ((from, a), (to, b)) = if *mark <= at {
        ((*mark, marked), (at, state))
    } else {
        ((at, state), (*mark, marked))
    };
    match crate::inspect::state_at::diff_states(a, b) {
        Ok(changes) => {
            let mut lines = Vec::new();
            let mut text = String::new();
            for c in &changes {
                lines.extend(c.text(100).lines().map(str::to_string));
                text.push_str(&serde_json::to_string(c).unwrap_or_default());
                text.push('\n');
            }
            if changes.is_empty() {
                lines.push("the two states are the same".into());
            }
            view.value = Some(ValueView {
                title: format!(
                    "state {} -> {}: {}",
                    point_label(from),
                    point_label(to),
                    crate::text::count(changes.len() as u64, "key changed", "keys changed")
                ),
                text,
                lines,
                ..ValueView::default()
            });
        }
        Err(e) => view.notice = Some(format!("the states cannot be compared: {e}")),
    }
}

/// While the search prompt is open, the table shows what its text matches.
fn filter_as_typed(view: &mut ViewState) {
    if let Some(p) = view
        .prompt
        .as_ref()
        .filter(|p| p.kind == PromptKind::Filter)
    {
        let text = p.input.clone();
        set_filter(view, &text);
    }
}

/// Sets the table filter to what the search prompt holds (cleared when empty or not a valid
/// query: the prompt says why).
fn set_filter(view: &mut ViewState, text: &str) {
    let text = text.trim();
    view.filter_query = crate::inspect::search::Query::parse(text).ok();
    view.filter = view.filter_query.as_ref().map(|_| text.to_string());
}

/// Starts (or keeps, when it is the same text) the search of the whole source.
fn start_search(model: &mut Model, view: &mut ViewState, text: &str) -> Result<(), String> {
    let query = crate::inspect::search::Query::parse(text)?;
    if model
        .search
        .as_ref()
        .is_none_or(|s| s.text != text || s.error.is_some())
    {
        view.searches += 1;
        view.search_jump = None;
        model.search = Some(SourceSearch {
            id: view.searches,
            text: text.to_string(),
            ..SourceSearch::default()
        });
        view.search_scan = Some((view.searches, query));
    }
    Ok(())
}

/// `n` / `N`: seeks to the next / previous match of the search (from the selected row, else
/// the cursor); waits for the scan when it has not got there yet.
/// A click: on the timeline, a seek there; on a row of the table, that row selected (a second
/// quick click there: its whole value).
fn click(
    column: u16,
    row: u16,
    double: bool,
    model: &mut Model,
    view: &mut ViewState,
) -> Vec<Command> {
    use crate::tui::view::{Hit, hit};
    let (w, h) = view.screen;
    match hit(
        ratatui::layout::Rect::new(0, 0, w, h),
        model,
        view,
        column,
        row,
    ) {
        Some(Hit::Timeline(offset)) => go_to(offset, view),
        Some(Hit::Row(offset)) => {
            view.focus = Focus::Table;
            view.selected = Some(offset);
            view.detail_scroll = 0;
            if double {
                open_value(model, view);
            }
            Vec::new()
        }
        None => Vec::new(),
    }
}

/// After rows arrive: the part of a move that went past the rows held is made now.
pub fn settle_scroll(model: &mut Model, view: &mut ViewState) {
    let owed = model.window.owed;
    if owed != 0 && model.window.pending.is_none() && model.window.wanted.is_none() {
        move_rows(owed, model, view);
    }
}

pub fn search_jump(
    list: JumpList,
    direction: SearchDirection,
    model: &mut Model,
    view: &mut ViewState,
) -> Vec<Command> {
    let from = view.selected.or(model.position());
    let (search, missing, what) = match list {
        JumpList::Search => (
            model.search.as_mut(),
            "no search yet: / then a query and Enter searches the source",
            "match",
        ),
        JumpList::Divergences => (
            model.against.as_mut().map(|a| &mut a.divergences),
            "no other source to compare with: open LEFT --against RIGHT",
            "divergence",
        ),
    };
    let Some(search) = search else {
        view.search_jump = None;
        model.error = Some(missing.into());
        return Vec::new();
    };
    match search.step(from, direction) {
        SearchStep::To { offset, wrapped } => {
            view.search_jump = None;
            search.note = wrapped.then(|| match direction {
                SearchDirection::Forward => format!("past the last {what}: back to the first"),
                SearchDirection::Backward => format!("before the first {what}: on to the last"),
            });
            view.selected = None;
            vec![
                Command::Seek(SeekTarget::Position(Position::Offset(offset))),
                Command::Step(1),
            ]
        }
        SearchStep::Scanning => {
            view.search_jump = Some((list, direction));
            search.note = Some(format!("looking for the next {what}…"));
            Vec::new()
        }
        SearchStep::None => {
            view.search_jump = None;
            search.note = (list == JumpList::Divergences).then(|| "none".to_string());
            Vec::new()
        }
    }
}

/// `HH:MM`, `HH:MM:SS` or `HH:MM:SS.mmm` as that time (UTC) on the day of the source's first
/// event, when it has wall times.
fn time_of_day(t: &str, source: &SourceInfo) -> Option<u64> {
    let first = source.first_time_ns?;
    let time = chrono::NaiveTime::parse_from_str(t, "%H:%M:%S%.f")
        .or_else(|_| chrono::NaiveTime::parse_from_str(t, "%H:%M"))
        .ok()?;
    let day = chrono::DateTime::from_timestamp_nanos(first as i64).date_naive();
    let at = day.and_time(time).and_utc().timestamp_nanos_opt()?;
    u64::try_from(at).ok()
}

/// `mark:NAME` as the marker's own position (an unknown name is an error listing the names);
/// anything else as it is.
pub fn expand_marker(
    input: &str,
    markers: &crate::event::marker::MarkerSet,
) -> Result<String, String> {
    let t = input.trim();
    if !t.starts_with("mark:") {
        return Ok(input.to_string());
    }
    let pos: Position = t
        .parse()
        .map_err(|e: crate::event::PositionParseError| e.to_string())?;
    markers.resolve(&pos).map(|p| match p {
        Position::Offset(o) => o.to_string(),
        Position::CommitTs(ts) => format!("@{ts}"),
        Position::Time(ns) => crate::event::format_time_ns(ns),
        Position::Marker(n) => format!("mark:{n}"),
    })
}

/// A seek prompt's input (a marker's name taken for its position) parsed.
fn parse_seek_input(input: &str, model: &Model) -> Result<SeekTarget, String> {
    let input = expand_marker(input, &model.markers)?;
    parse_seek(&input, &model.bounds(), model.position())
}

fn validate(prompt: &mut Prompt, model: &Model) {
    let source = &model.bounds();
    prompt.error = match prompt.kind {
        PromptKind::Seek => match prompt.input.trim().strip_prefix('/') {
            Some(q) => crate::inspect::search::Query::parse(q).err(),
            None => parse_seek_input(&prompt.input, model).err(),
        },
        PromptKind::Resume => parse_resume(&prompt.input, source).err(),
        PromptKind::Filter if prompt.input.trim().is_empty() => None,
        PromptKind::Filter => crate::inspect::search::Query::parse(prompt.input.trim()).err(),
        PromptKind::History if prompt.input.trim().is_empty() => {
            Some("give a key, exactly as stored (e.g. plan or memory/refund)".to_string())
        }
        PromptKind::History => None,
        PromptKind::Find => None,
        PromptKind::Marker => parse_marker_input(&prompt.input, 0).err(),
    };
}

/// What the marker prompt holds: a name, then (after a space) a caption.
fn parse_marker_input(input: &str, at: u64) -> Result<crate::event::marker::Marker, String> {
    let t = input.trim();
    if t.is_empty() {
        return Err("a name, then (after a space) the caption to show there".into());
    }
    let (name, caption) = match t.split_once(char::is_whitespace) {
        Some((n, c)) => (n, Some(c.trim().to_string()).filter(|c| !c.is_empty())),
        None => (t, None),
    };
    crate::event::marker::Marker::parse_spec(&format!("{name}@{at}"), caption)
}

/// Seeks so that `offset` plays (paused: the event is shown).
fn go_to(offset: u64, view: &mut ViewState) -> Vec<Command> {
    view.selected = None;
    vec![
        Command::Seek(SeekTarget::Position(Position::Offset(offset))),
        Command::Step(1),
    ]
}

/// Applies an action to the view; returns the player commands it implies.
pub fn handle(action: Action, model: &mut Model, view: &mut ViewState) -> Vec<Command> {
    let mut out = Vec::new();
    view.notice = None;
    // Any other key cancels an `n` / `N` still waiting for the scan.
    if !matches!(
        action,
        Action::SearchNext | Action::SearchPrevious | Action::NextDivergence
    ) {
        view.search_jump = None;
    }
    match action {
        Action::Quit => view.quit = true,
        // The full-value view: scroll, find, copy, close.
        Action::OpenValue => open_value(model, view),
        Action::Escape if view.value.is_some() && view.prompt.is_none() => view.value = None,
        Action::Up
        | Action::Down
        | Action::PageUp
        | Action::PageDown
        | Action::Home
        | Action::End
            if view.value.is_some() =>
        {
            let v = view.value.as_mut().expect("the value view is open");
            let last = v.lines.len().saturating_sub(1);
            v.scroll = match action {
                Action::Up => v.scroll.saturating_sub(1),
                Action::Down => (v.scroll + 1).min(last),
                Action::PageUp => v.scroll.saturating_sub(20),
                Action::PageDown => (v.scroll + 20).min(last),
                Action::Home => 0,
                _ => last,
            };
        }
        Action::OpenFilter if view.value.is_some() => {
            view.prompt = Some(Prompt::new(PromptKind::Find, String::new()));
        }
        Action::SearchNext | Action::SearchPrevious if view.value.is_some() => {
            let v = view.value.as_mut().expect("the value view is open");
            let direction = if action == Action::SearchNext {
                SearchDirection::Forward
            } else {
                SearchDirection::Backward
            };
            if v.find.is_none() {
                view.notice = Some("/ first: the text to find in this value".into());
            } else if !v.find_step(direction, false) {
                view.notice = Some("not in this value".into());
            }
        }
        Action::Mark => match &model.state {
            Some(state) => {
                let at = model.state_offset();
                view.mark = Some((at, state.clone()));
                view.notice = Some(format!(
                    "marked the state at {} (d: what changed since)",
                    point_label(at)
                ));
            }
            None => view.notice = Some("no state to mark yet".into()),
        },
        Action::StateDiff => open_state_diff(model, view),
        Action::Copy => {
            if let Some(v) = &view.value {
                view.clipboard = Some(v.text.clone());
                view.notice = Some(format!(
                    "copied {} ({}) to the clipboard through the terminal (OSC 52)",
                    v.title,
                    crate::tui::view::gauges::human_bytes(v.text.len() as u64)
                ));
            }
        }
        Action::ToggleHelp => view.help = !view.help,
        // The list of markers: move, go to one, close.
        Action::Escape if view.markers_open && view.prompt.is_none() => view.markers_open = false,
        Action::Up | Action::Down | Action::Home | Action::End if view.markers_open => {
            let last = model.marker_offsets.len().saturating_sub(1);
            view.markers_selected = match action {
                Action::Up => view.markers_selected.saturating_sub(1),
                Action::Down => (view.markers_selected + 1).min(last),
                Action::Home => 0,
                _ => last,
            };
        }
        Action::PromptSubmit if view.markers_open && view.prompt.is_none() => {
            if let Some((o, _)) = model.marker_offsets.get(view.markers_selected) {
                view.markers_open = false;
                out.extend(go_to(*o, view));
            }
        }
        Action::MarkerList => {
            if model.marker_offsets.is_empty() {
                view.notice = Some("no markers yet: M adds one here".into());
            } else {
                view.markers_open = true;
                let p = model.position().unwrap_or(0);
                view.markers_selected = model
                    .marker_offsets
                    .iter()
                    .rposition(|(o, _)| *o <= p)
                    .unwrap_or(0);
            }
        }
        Action::AddMarker => {
            view.prompt = Some(Prompt::new(PromptKind::Marker, String::new()));
        }
        Action::PrevMarker | Action::NextMarker => {
            let p = view.selected.or(model.position());
            let found = if action == Action::NextMarker {
                model
                    .marker_offsets
                    .iter()
                    .find(|(o, _)| p.is_none_or(|p| *o > p))
            } else {
                model
                    .marker_offsets
                    .iter()
                    .rev()
                    .find(|(o, _)| p.is_some_and(|p| *o < p))
            };
            match found {
                Some((o, m)) => {
                    view.notice = Some(format!("marker {}", m.name));
                    out.extend(go_to(*o, view));
                }
                None if model.marker_offsets.is_empty() => {
                    view.notice = Some("no markers yet: M adds one here".into());
                }
                None => view.notice = Some("no marker that way".into()),
            }
        }
        Action::LoopA => {
            if model.stats.ab_loop.is_some() || view.loop_a.is_some() {
                view.loop_a = None;
                view.notice = Some("A-B loop off".into());
                out.push(Command::SetLoop(None));
            } else if let Some(p) = model.position() {
                view.loop_a = Some(p);
                view.notice = Some(format!(
                    "A at #{}: B sets the end of the loop",
                    crate::text::thousands(p)
                ));
            }
        }
        Action::LoopB => match (view.loop_a, model.position()) {
            (Some(a), Some(b)) if b > a => {
                view.notice = Some(format!(
                    "looping {} (A again: off)",
                    crate::text::range_screen(a, b)
                ));
                out.push(Command::SetLoop(Some((a, b))));
                if model.stats.state != PlayState::Playing {
                    out.push(Command::Resume);
                }
            }
            (Some(a), _) => {
                view.notice = Some(format!(
                    "B must be after A (#{}): play on, then B",
                    crate::text::thousands(a)
                ))
            }
            (None, _) => view.notice = Some("A first: the start of the loop".into()),
        },
        Action::CycleLayout => {
            view.layout = view.layout.next();
            view.layout_changed = true;
            view.notice = Some(format!("layout: {}", view.layout.name()));
        }
        Action::Click {
            column,
            row,
            double,
        } => out.extend(click(column, row, double, model, view)),
        // The history overlay closes (its scan is stopped by the UI loop).
        Action::Escape if view.history_open && view.prompt.is_none() => {
            view.history_open = false;
            model.history = None;
        }
        Action::Escape => {
            // The search prompt closed without Enter: the table filter it was narrowing to
            // what was typed goes back to what it was.
            if view
                .prompt
                .as_ref()
                .is_some_and(|p| p.kind == PromptKind::Filter)
            {
                let before = view.filter_before.take().unwrap_or_default();
                set_filter(view, &before);
            }
            // Closes the innermost thing: a prompt, the help, the error banner, then the report.
            if view.prompt.take().is_none()
                && !std::mem::take(&mut view.help)
                && model.error.take().is_none()
            {
                model.report = None;
            }
        }
        // At the end, Space plays it again from the start (a new run).
        Action::TogglePause => match (model.stats.state, model.range()) {
            (PlayState::Finished, Some((first, _))) => {
                view.selected = None;
                model.report = None;
                // With an A-B loop's start set: from A.
                out.push(Command::ResumeFrom(view.loop_a.unwrap_or(first)));
            }
            _ => out.push(Command::TogglePause),
        },
        Action::Step => {
            view.selected = None;
            out.push(Command::Step(1));
        }
        Action::StepBack => {
            view.selected = None;
            out.push(Command::StepBack(1));
        }
        // Relative to the player's pace when it handles the command: presses in a row add up.
        Action::SpeedUp | Action::SpeedDown => {
            out.push(Command::StepPace(action == Action::SpeedUp));
        }
        Action::CyclePace => out.push(Command::CyclePace),
        Action::OpenSeek => {
            let mut p = Prompt::new(PromptKind::Seek, String::new());
            validate(&mut p, model);
            view.prompt = Some(p);
        }
        Action::OpenResume => {
            let mut p = Prompt::new(PromptKind::Resume, model.resume_offset().to_string());
            validate(&mut p, model);
            view.prompt = Some(p);
        }
        // A fresh line each time (the last filter is one ↑ away).
        Action::OpenFilter => {
            view.filter_before = view.filter.clone();
            view.prompt = Some(Prompt::new(PromptKind::Filter, String::new()));
        }
        Action::SearchNext => out.extend(search_jump(
            JumpList::Search,
            SearchDirection::Forward,
            model,
            view,
        )),
        Action::SearchPrevious => out.extend(search_jump(
            JumpList::Search,
            SearchDirection::Backward,
            model,
            view,
        )),
        Action::NextDivergence => out.extend(search_jump(
            JumpList::Divergences,
            SearchDirection::Forward,
            model,
            view,
        )),
        Action::OpenHistory => {
            let key = model
                .selected_row(view)
                .and_then(|r| r.event.operations.first())
                .map(|op| op.key.to_string())
                .unwrap_or_default();
            view.prompt = Some(Prompt::new(PromptKind::History, key));
        }
        // The history overlay: move, go to a version, close.
        Action::Up
        | Action::Down
        | Action::PageUp
        | Action::PageDown
        | Action::Home
        | Action::End
            if view.history_open =>
        {
            let n = model.history.as_ref().map_or(0, |h| h.versions.len());
            let last = n.saturating_sub(1);
            view.history_selected = match action {
                Action::Up => view.history_selected.saturating_sub(1),
                Action::Down => (view.history_selected + 1).min(last),
                Action::PageUp => view.history_selected.saturating_sub(10),
                Action::PageDown => (view.history_selected + 10).min(last),
                Action::Home => 0,
                _ => last,
            };
        }
        Action::PromptSubmit if view.history_open && view.prompt.is_none() => {
            if let Some(v) = model
                .history
                .as_ref()
                .and_then(|h| h.versions.get(view.history_selected))
            {
                view.history_open = false;
                view.selected = None;
                out.push(Command::Seek(SeekTarget::Position(
                    crate::event::Position::Offset(v.offset),
                )));
                out.push(Command::Step(1));
            }
        }
        Action::PromptChar(c) => {
            if let Some(p) = view.prompt.as_mut() {
                p.insert(c);
                validate(p, model);
            }
            filter_as_typed(view);
        }
        Action::PromptBackspace => {
            if let Some(p) = view.prompt.as_mut() {
                p.backspace();
                validate(p, model);
            }
            filter_as_typed(view);
        }
        Action::PromptEdit(e) => {
            if let Some(p) = view.prompt.as_mut() {
                let history = view.history.get(&p.kind).map(Vec::as_slice).unwrap_or(&[]);
                p.edit(e, history);
                validate(p, model);
            }
            filter_as_typed(view);
        }
        Action::PromptSubmit => {
            if let Some(p) = view.prompt.clone() {
                // Only what was taken goes into the history.
                let taken = match p.kind {
                    PromptKind::Seek => match p.input.trim().strip_prefix('/') {
                        Some(q) => crate::inspect::search::Query::parse(q).is_ok(),
                        None => parse_seek_input(&p.input, model).is_ok(),
                    },
                    PromptKind::Resume => parse_resume(&p.input, &model.bounds()).is_ok(),
                    PromptKind::Filter => {
                        p.input.trim().is_empty()
                            || crate::inspect::search::Query::parse(p.input.trim()).is_ok()
                    }
                    PromptKind::History => !p.input.trim().is_empty(),
                    PromptKind::Marker => false,
                    PromptKind::Find => !p.input.is_empty(),
                };
                let entry = p.input.trim().to_string();
                let last = view.history.get(&p.kind).and_then(|h| h.last());
                if taken && !entry.is_empty() && last != Some(&entry) {
                    view.history.entry(p.kind).or_default().push(entry);
                }
                match p.kind {
                    // `g` then `/QUERY`: the next match of a search of the whole source.
                    PromptKind::Seek if p.input.trim().starts_with('/') => {
                        let text = p.input.trim()[1..].trim();
                        match start_search(model, view, text) {
                            Ok(()) => {
                                view.prompt = None;
                                // The table shows what the search finds, as after `/`.
                                set_filter(view, text);
                                out.extend(search_jump(
                                    JumpList::Search,
                                    SearchDirection::Forward,
                                    model,
                                    view,
                                ));
                            }
                            Err(e) => view.prompt.as_mut().expect("prompt is open").error = Some(e),
                        }
                    }
                    PromptKind::Seek => match parse_seek_input(&p.input, model) {
                        Ok(t) => {
                            view.prompt = None;
                            view.selected = None;
                            out.push(Command::Seek(t));
                            out.push(Command::Step(1));
                        }
                        Err(e) => view.prompt.as_mut().expect("prompt is open").error = Some(e),
                    },
                    PromptKind::Resume => match parse_resume(&p.input, &model.bounds()) {
                        Ok(o) => {
                            view.prompt = None;
                            view.selected = None;
                            model.report = None;
                            out.push(Command::ResumeFrom(o));
                        }
                        Err(e) => view.prompt.as_mut().expect("prompt is open").error = Some(e),
                    },
                    // The table keeps the filter; a query also searches the whole source.
                    PromptKind::Filter => {
                        let text = p.input.trim();
                        set_filter(view, text);
                        if text.is_empty() {
                            view.prompt = None;
                            model.search = None;
                        } else {
                            match start_search(model, view, text) {
                                Ok(()) => view.prompt = None,
                                Err(e) => {
                                    view.prompt.as_mut().expect("prompt is open").error = Some(e)
                                }
                            }
                        }
                        view.selected = None;
                    }
                    PromptKind::Find => {
                        view.prompt = None;
                        if let Some(v) = view.value.as_mut() {
                            v.find = (!p.input.is_empty()).then(|| p.input.clone());
                            v.found_line = None;
                            if v.find.is_some() && !v.find_step(SearchDirection::Forward, true) {
                                view.notice = Some(format!("{:?} is not in this value", p.input));
                            }
                        }
                    }
                    PromptKind::Marker => {
                        // At the selected row, else where the player is.
                        let at = view.selected.or(model.position()).unwrap_or(0);
                        match parse_marker_input(&p.input, at) {
                            Ok(m) => {
                                view.prompt = None;
                                view.new_marker = Some(m);
                            }
                            Err(e) => view.prompt.as_mut().expect("prompt is open").error = Some(e),
                        }
                    }
                    PromptKind::History => {
                        let key = p.input.trim().to_string();
                        if !key.is_empty() {
                            view.prompt = None;
                            view.history_open = true;
                            view.history_selected = 0;
                            model.history = Some(KeyHistory {
                                key: key.clone(),
                                ..KeyHistory::default()
                            });
                            view.history_scan = Some(key);
                        }
                    }
                }
            }
        }
        Action::SeekPercent(d) => {
            if model.range().is_some() {
                view.selected = None;
                out.push(Command::Seek(SeekTarget::RelativePercent(d as f64)));
                if model.stats.state != PlayState::Playing {
                    out.push(Command::Step(1));
                }
            }
        }
        Action::Stop => out.push(Command::Stop),
        Action::ToggleFreeze => {
            view.frozen_at = match view.frozen_at {
                Some(_) => None,
                None => Some(model.position().unwrap_or(0)),
            };
        }
        Action::FocusNext => {
            view.focus = match view.focus {
                Focus::Table => Focus::Detail,
                Focus::Detail => Focus::State,
                Focus::State => Focus::Table,
            }
        }
        // Following a live source, End in the table also goes back to live: the newest event
        // plays next (what is skipped is folded into the state) and a pause ends.
        Action::End if view.focus == Focus::Table && model.stats.following => {
            move_selection(action, model, view);
            if let Some(head) = model.stats.head_offset
                && model.stats.behind_head().is_some_and(|n| n > 1)
            {
                out.push(Command::Seek(crate::player::SeekTarget::Position(
                    crate::event::Position::Offset(head),
                )));
            }
            if model.stats.state == PlayState::Paused {
                out.push(Command::Resume);
            }
        }
        Action::Up
        | Action::Down
        | Action::PageUp
        | Action::PageDown
        | Action::Home
        | Action::End => move_selection(action, model, view),
    }
    out
}

fn move_selection(action: Action, model: &mut Model, view: &mut ViewState) {
    let mut step: i64 = match action {
        Action::Up => -1,
        Action::Down => 1,
        Action::PageUp => -20,
        Action::PageDown => 20,
        _ => 0,
    };
    match view.focus {
        Focus::Detail => {
            view.detail_scroll = scroll(view.detail_scroll, action, step);
            return;
        }
        Focus::State => {
            view.state_scroll = scroll(view.state_scroll, action, step);
            return;
        }
        Focus::Table => {}
    }
    view.detail_scroll = 0;
    match action {
        // Back to the last event played, following it.
        Action::End => {
            view.selected = None;
            if model.window.detached {
                model.rows.clear();
                model.window = RowWindow::default();
                let bound = model.position().map_or(0, |p| p + 1);
                model.want_rows(RowLoad::Before { bound });
            }
            return;
        }
        // The source's first event: read from there unless it is held.
        Action::Home if !model.window.at_start => {
            let (Some(first), Some(played)) = (model.source.first_offset, model.position()) else {
                return;
            };
            model.rows.clear();
            model.window = RowWindow {
                detached: true,
                ..RowWindow::default()
            };
            model.want_rows(RowLoad::After {
                from: first,
                until: played,
            });
            view.selected = Some(first);
            return;
        }
        _ => {}
    }
    if action == Action::Home {
        step = i64::MIN / 2;
    }
    // Presses made while rows are read add up.
    move_rows(step.saturating_add(model.window.owed), model, view);
}

/// Moves the selection `step` rows (negative: up) among the visible rows; what goes past the
/// rows held is owed until the rows being read arrive ([`settle_scroll`]).
fn move_rows(step: i64, model: &mut Model, view: &mut ViewState) {
    let offsets: Vec<u64> = model.visible_rows(view).map(|r| r.event.offset).collect();
    if offsets.is_empty() {
        return;
    }
    let current = view
        .selected
        .map(|o| offsets.partition_point(|x| *x < o).min(offsets.len() - 1))
        .unwrap_or(offsets.len() - 1);
    let wanted = current as i64 + step;
    let next = wanted.clamp(0, offsets.len() as i64 - 1);
    // Past the rows held where more can be read: the rest of the move waits for them.
    let more_above = !model.window.at_start;
    let more_below = model.window.detached;
    model.window.owed = if (wanted < 0 && more_above) || (wanted > next && more_below) {
        (wanted - next).clamp(-(MAX_ROWS as i64), MAX_ROWS as i64)
    } else {
        0
    };
    let next = next as usize;
    view.selected = Some(offsets[next]);
    // Near either end of what is held: read on, so scrolling does not stop there.
    if next < PREFETCH_ROWS
        && !model.window.at_start
        && let Some(front) = model.rows.front()
    {
        let bound = front.event.offset;
        model.want_rows(RowLoad::Before { bound });
    } else if next + PREFETCH_ROWS >= offsets.len()
        && model.window.detached
        && let (Some(back), Some(played)) = (model.rows.back(), model.position())
    {
        let from = back.event.offset + 1;
        model.want_rows(RowLoad::After {
            from,
            until: played,
        });
    }
}

fn scroll(v: u16, action: Action, step: i64) -> u16 {
    match action {
        Action::Home => 0,
        Action::End => u16::MAX / 2,
        _ => (v as i64 + step).clamp(0, u16::MAX as i64 / 2) as u16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn source() -> SourceInfo {
        SourceInfo {
            name: "sample.mcap".into(),
            kind: "archive".into(),
            events: Some(100),
            first_offset: Some(0),
            last_offset: Some(99),
            first_commit_ts: Some(1),
            last_commit_ts: Some(130),
            first_time_ns: Some(1_000_000_000),
            last_time_ns: Some(101_000_000_000),
            channels: vec![],
            final_hash: None,
            ..Default::default()
        }
    }

    #[test]
    fn seek_input_is_validated_inline() {
        let s = source();
        assert_eq!(
            parse_seek("42", &s, Some(50)),
            Ok(SeekTarget::Position(Position::Offset(42)))
        );
        assert_eq!(
            parse_seek("50%", &s, Some(50)),
            Ok(SeekTarget::Percent(50.0))
        );
        assert_eq!(parse_seek("-5", &s, Some(50)), Ok(SeekTarget::Relative(-5)));
        assert_eq!(parse_seek("+5", &s, Some(50)), Ok(SeekTarget::Relative(5)));
        assert_eq!(
            parse_seek("@7", &s, Some(50)),
            Ok(SeekTarget::Position(Position::CommitTs(7)))
        );
        assert!(
            parse_seek("120", &s, Some(50))
                .unwrap_err()
                .contains("outside offsets 0 to 99")
        );
        assert!(
            parse_seek("150%", &s, Some(50))
                .unwrap_err()
                .contains("between 0 and 100")
        );
        assert!(
            parse_seek("@999", &s, Some(50))
                .unwrap_err()
                .contains("outside @1 to @130")
        );
        assert!(
            parse_seek("soon", &s, Some(50))
                .unwrap_err()
                .contains("invalid position")
        );
        // Relative moves past the range are errors, like absolute ones.
        assert!(
            parse_seek("+99999", &s, Some(50))
                .unwrap_err()
                .contains("outside offsets 0 to 99")
        );
        assert!(parse_seek("-51", &s, Some(50)).is_err());
        // Doubled signs are not moves (and cannot overflow).
        assert!(parse_seek("--5", &s, Some(50)).is_err());
        assert!(parse_seek("--9223372036854775808", &s, Some(50)).is_err());
        // The table's time of day: that time on the day the source starts (1970-01-01 here).
        assert_eq!(
            parse_seek("00:00:30", &s, Some(50)),
            Ok(SeekTarget::Position(Position::Time(30_000_000_000)))
        );
        assert_eq!(
            parse_seek("00:01", &s, None),
            Ok(SeekTarget::Position(Position::Time(60_000_000_000)))
        );
    }

    #[test]
    fn the_filter_matches_substrings_agents_and_txn_prefixes() {
        use crate::inspect::search::Query;
        let e = crate::event::Event {
            offset: 3,
            txn_id: "e57d4462-9adb-4816-989b-746c1ad7ecd8".into(),
            commit_ts: 9,
            commit_time_ns: None,
            namespace: "ops".into(),
            agent_id: "writer-203c".into(),
            operations: vec![crate::event::Operation {
                key: "conversation/turn-00116".into(),
                value: None,
                version: 3,
            }],
        };
        for yes in [
            "ops/writer-203c",
            "writer",
            "turn-001",
            "conversation/",
            "e57d4462-9adb",
        ] {
            assert!(Query::parse(yes).unwrap().matches(&e), "{yes}");
        }
        for no in ["memory/", "9adb-4816", "ops/reader"] {
            assert!(!Query::parse(no).unwrap().matches(&e), "{no}");
        }
    }

    #[test]
    fn prompts_edit_like_a_shell_line() {
        use crate::tui::input::LineEdit;
        let mut m = Model::new(source(), crate::tui::view::tests::stats());
        let mut v = ViewState::default();
        handle(Action::OpenFilter, &mut m, &mut v);
        for c in "memory/abc".chars() {
            handle(Action::PromptChar(c), &mut m, &mut v);
        }
        let p = |v: &ViewState| v.prompt.clone().unwrap();
        for _ in 0..3 {
            handle(Action::PromptEdit(LineEdit::Left), &mut m, &mut v);
        }
        handle(Action::PromptChar('X'), &mut m, &mut v);
        assert_eq!(p(&v).input, "memory/Xabc");
        handle(Action::PromptEdit(LineEdit::Home), &mut m, &mut v);
        handle(Action::PromptEdit(LineEdit::Delete), &mut m, &mut v);
        assert_eq!(p(&v).input, "emory/Xabc");
        handle(Action::PromptEdit(LineEdit::End), &mut m, &mut v);
        handle(Action::PromptChar(' '), &mut m, &mut v);
        handle(Action::PromptChar('z'), &mut m, &mut v);
        handle(Action::PromptEdit(LineEdit::KillWord), &mut m, &mut v);
        assert_eq!(p(&v).input, "emory/Xabc ");
        handle(Action::PromptEdit(LineEdit::KillToStart), &mut m, &mut v);
        assert_eq!(p(&v).input, "");
        for c in "ops/".chars() {
            handle(Action::PromptChar(c), &mut m, &mut v);
        }
        handle(Action::PromptSubmit, &mut m, &mut v);
        assert_eq!(v.filter.as_deref(), Some("ops/"));
        // Reopened: a fresh line, the last filter one ↑ away.
        handle(Action::OpenFilter, &mut m, &mut v);
        assert_eq!(p(&v).input, "");
        handle(Action::PromptEdit(LineEdit::Older), &mut m, &mut v);
        assert_eq!(p(&v).input, "ops/");
        handle(Action::PromptEdit(LineEdit::Newer), &mut m, &mut v);
        assert_eq!(p(&v).input, "");
        // ↓ with nothing recalled keeps what is typed.
        handle(Action::PromptChar('k'), &mut m, &mut v);
        handle(Action::PromptEdit(LineEdit::Newer), &mut m, &mut v);
        assert_eq!(p(&v).input, "k");
        // A seek that is refused does not go into the history.
        handle(Action::Escape, &mut m, &mut v);
        handle(Action::OpenSeek, &mut m, &mut v);
        for c in "abc".chars() {
            handle(Action::PromptChar(c), &mut m, &mut v);
        }
        handle(Action::PromptSubmit, &mut m, &mut v);
        assert!(!v.history.contains_key(&PromptKind::Seek));
    }

    #[test]
    fn seek_prompt_submits_only_valid_targets() {
        let mut m = Model::new(source(), crate::tui::view::tests::stats());
        let mut v = ViewState::default();
        assert!(handle(Action::OpenSeek, &mut m, &mut v).is_empty());
        for c in "500".chars() {
            handle(Action::PromptChar(c), &mut m, &mut v);
        }
        assert!(
            v.prompt
                .as_ref()
                .unwrap()
                .error
                .as_ref()
                .unwrap()
                .contains("outside")
        );
        assert!(handle(Action::PromptSubmit, &mut m, &mut v).is_empty());
        assert!(v.prompt.is_some());
        handle(Action::PromptBackspace, &mut m, &mut v);
        handle(Action::PromptBackspace, &mut m, &mut v);
        let cmds = handle(Action::PromptSubmit, &mut m, &mut v);
        assert_eq!(
            cmds,
            vec![
                Command::Seek(SeekTarget::Position(Position::Offset(5))),
                Command::Step(1)
            ]
        );
        assert!(v.prompt.is_none());
    }

    #[test]
    fn resume_prompt_is_prefilled_with_the_next_offset() {
        let mut m = Model::new(source(), crate::tui::view::tests::stats());
        m.stats.position = Some(41);
        let mut v = ViewState::default();
        handle(Action::OpenResume, &mut m, &mut v);
        assert_eq!(v.prompt.as_ref().unwrap().input, "42");
        assert_eq!(
            handle(Action::PromptSubmit, &mut m, &mut v),
            vec![Command::ResumeFrom(42)]
        );
    }

    #[test]
    fn space_at_the_end_plays_again_from_the_start() {
        let mut m = Model::new(source(), crate::tui::view::tests::stats());
        let mut v = ViewState::default();
        m.stats.state = PlayState::Playing;
        assert_eq!(
            handle(Action::TogglePause, &mut m, &mut v),
            vec![Command::TogglePause]
        );
        m.stats.state = PlayState::Finished;
        let first = m.range().unwrap().0;
        assert_eq!(
            handle(Action::TogglePause, &mut m, &mut v),
            vec![Command::ResumeFrom(first)]
        );
    }

    #[test]
    fn escape_closes_the_innermost_thing_first() {
        let mut m = Model::new(source(), crate::tui::view::tests::stats());
        m.error = Some("boom".into());
        m.report = Some(crate::player::Report {
            source: "s".into(),
            outcome: crate::player::Outcome::Stopped,
            reason: None,
            events_sent: 0,
            events_replayed: 0,
            failures: 0,
            bytes: 0,
            duration_ms: 0,
            first_offset: None,
            last_offset: None,
            next_offset: Some(3),
            achieved_rate: 0.0,
            max_lag_ms: 0.0,
            p99_lag_ms: 0.0,
            final_hash: None,
            state_hash: None,
            pace: crate::player::Pace::Fast,
            passes: 1,
            output_closed: false,
        });
        let mut v = ViewState {
            help: true,
            ..ViewState::default()
        };
        handle(Action::OpenSeek, &mut m, &mut v);
        handle(Action::Escape, &mut m, &mut v);
        assert!(v.prompt.is_none() && v.help);
        handle(Action::Escape, &mut m, &mut v);
        assert!(!v.help && m.error.is_some());
        handle(Action::Escape, &mut m, &mut v);
        assert!(m.error.is_none() && m.report.is_some());
        handle(Action::Escape, &mut m, &mut v);
        assert!(m.report.is_none());
    }

    #[test]
    fn model_keeps_rows_in_order_across_a_step_back() {
        let mut m = Model::new(source(), crate::tui::view::tests::stats());
        for e in crate::tui::view::tests::events(10) {
            m.apply(Update::Played {
                row: Row {
                    event: Arc::new(e),
                    size: 10,
                    diff: None,
                },
                state: None,
            });
        }
        m.apply(Update::Repositioned {
            next_offset: 7,
            state: None,
        });
        assert_eq!(m.rows.back().unwrap().event.offset, 6);
        let v = ViewState {
            frozen_at: Some(3),
            ..ViewState::default()
        };
        assert_eq!(m.visible_rows(&v).count(), 4);
    }

    #[test]
    fn keys_change_selection_speed_and_freeze() {
        let mut m = Model::new(source(), crate::tui::view::tests::stats());
        for e in crate::tui::view::tests::events(10) {
            m.apply(Update::Played {
                row: Row {
                    event: Arc::new(e),
                    size: 10,
                    diff: None,
                },
                state: None,
            });
        }
        let mut v = ViewState::default();
        handle(Action::Up, &mut m, &mut v);
        assert_eq!(v.selected, Some(8));
        handle(Action::Home, &mut m, &mut v);
        assert_eq!(v.selected, Some(0));
        handle(Action::End, &mut m, &mut v);
        assert_eq!(v.selected, None);
        // Every press is one step, relative to the player's pace when it handles it.
        for _ in 0..3 {
            assert_eq!(
                handle(Action::SpeedUp, &mut m, &mut v),
                vec![Command::StepPace(true)]
            );
        }
        m.stats.position = Some(9);
        handle(Action::ToggleFreeze, &mut m, &mut v);
        assert_eq!(v.frozen_at, Some(9));
        // A jump forward: the position is the player's until a row is played there.
        m.apply(Update::Repositioned {
            next_offset: 15,
            state: None,
        });
        m.stats.position = Some(20);
        assert_eq!(m.pending(&v), 11);
    }
}
