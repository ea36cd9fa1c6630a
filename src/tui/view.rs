//! The screen's layout: which region goes where at this size, drawn by one render function per
//! region (`view/`), each reading the model and the view state and changing nothing. Colours
//! come from [`crate::tui::theme`].

pub mod detail;
pub mod footer;
pub mod gauges;
pub mod header;
pub mod help;
pub mod history;
pub mod markers;
pub mod prompt;
pub mod report;
pub mod state;
pub mod table;
pub mod timeline;
pub mod value;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType};

use crate::player::PlayState;
use crate::tui::app::{Focus, LayoutKind, Model, ViewState};
use crate::tui::theme;

pub use gauges::{human_bytes, short_bytes};

/// Below this size the detail and state panes fold away (tab switches the one big panel).
const WIDE: u16 = 110;
const TALL: u16 = 32;

/// A line in at most `width` columns: spans past it are dropped and the last column that shows
/// becomes `…`, so nothing is cut without a sign.
pub fn fit_line(line: Line<'static>, width: u16) -> Line<'static> {
    let width = width as usize;
    let total: usize = line.spans.iter().map(|s| s.content.chars().count()).sum();
    if total <= width {
        return line;
    }
    let mut left = width.saturating_sub(1);
    let mut spans = Vec::new();
    for span in line.spans {
        if left == 0 {
            break;
        }
        let n = span.content.chars().count();
        if n <= left {
            left -= n;
            spans.push(span);
        } else {
            let cut: String = span.content.chars().take(left).collect();
            spans.push(Span::styled(cut, span.style));
            left = 0;
        }
    }
    if width > 0 {
        spans.push(Span::raw("…"));
    }
    Line::from(spans)
}

/// Where each region goes for a layout at a size: drawing and the placing of clicks share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Regions {
    pub header: Rect,
    /// The present layout's caption box (zero height in the others).
    pub caption: Rect,
    pub body: Rect,
    /// The transport gauges in full (transport), folded into one line (inspect), or none.
    pub gauges: Rect,
    pub timeline: Rect,
    /// The key hints (none in the present layout).
    pub footer: Rect,
    /// Below [`WIDE`] x [`TALL`]: one panel at a time, short labels.
    pub compact: bool,
    /// One panel at a time (the focused one) rather than table | transaction over state.
    pub single_panel: bool,
}

pub fn regions(area: Rect, layout: LayoutKind) -> Regions {
    let compact = area.width < WIDE || area.height < TALL;
    let timeline_h = if compact { 1 } else { 2 };
    let (caption_h, gauges_h, footer_h) = match layout {
        LayoutKind::Inspect => (0, 1, 1),
        LayoutKind::Transport => (0, if compact { 2 } else { 4 }, 1),
        LayoutKind::Present => (4, 0, 0),
    };
    let [header, caption, body, gauges, timeline, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(caption_h),
        Constraint::Min(5),
        Constraint::Length(gauges_h),
        Constraint::Length(timeline_h),
        Constraint::Length(footer_h),
    ])
    .areas(area);
    Regions {
        header,
        caption,
        body,
        gauges,
        timeline,
        footer,
        compact,
        single_panel: compact || layout == LayoutKind::Present,
    }
}

/// The panels of the body: (table, transaction, state), each None when folded away.
fn panels(r: &Regions, view: &ViewState) -> [Option<Rect>; 3] {
    if r.single_panel {
        let mut out = [None; 3];
        out[match view.focus {
            Focus::Table => 0,
            Focus::Detail => 1,
            Focus::State => 2,
        }] = Some(r.body);
        return out;
    }
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(r.body);
    let [detail, state] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(right);
    [Some(left), Some(detail), Some(state)]
}

/// What a click at (`x`, `y`) lands on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// The timeline's bar, at this offset.
    Timeline(u64),
    /// A row of the event table, this event's.
    Row(u64),
}

/// What is under a click on a screen of `area` (None: nothing that takes a click, or an overlay
/// is open over it).
pub fn hit(area: Rect, model: &Model, view: &ViewState, x: u16, y: u16) -> Option<Hit> {
    if view.prompt.is_some()
        || view.help
        || view.value.is_some()
        || view.history_open
        || view.markers_open
    {
        return None;
    }
    let r = regions(area, view.layout);
    if let Some(o) = timeline::bar(r.timeline, model, r.compact).and_then(|b| b.offset_at(x, y)) {
        return Some(Hit::Timeline(o));
    }
    let [table, _, _] = panels(&r, view);
    table
        .and_then(|t| table::row_at(t, model, view, x, y))
        .map(Hit::Row)
}

pub fn render(frame: &mut Frame, model: &Model, view: &ViewState) {
    let area = frame.area();
    let r = regions(area, view.layout);
    header::render_header(frame, r.header, model, view);
    let [t, d, s] = panels(&r, view);
    if let Some(a) = t {
        table::render_table(frame, a, model, view);
    }
    if let Some(a) = d {
        detail::render_detail(frame, a, model, view);
    }
    if let Some(a) = s {
        state::render_state(frame, a, model, view);
    }
    match view.layout {
        LayoutKind::Transport => gauges::render_gauges(frame, r.gauges, model, r.compact),
        LayoutKind::Inspect => gauges::render_status_line(frame, r.gauges, model),
        LayoutKind::Present => markers::render_caption_box(frame, r.caption, model),
    }
    timeline::render_timeline(frame, r.timeline, model, r.compact);
    if r.footer.height > 0 {
        footer::render_footer(frame, r.footer, view, r.compact);
    }
    let body = r.body;
    if let Some(report) = &model.report
        && model.stats.state != PlayState::Playing
    {
        report::render_report(frame, body, model, report);
    }
    // Paused at a marker (`--pause-at-markers`): its caption over the body, as a banner (the
    // present layout shows it in its caption box).
    if view.layout != LayoutKind::Present
        && let Some(m) = model.paused_at_marker()
    {
        markers::render_marker_banner(frame, body, m);
    }
    if let Some(err) = &model.error {
        report::render_banner(frame, body, err);
    }
    if view.history_open
        && let Some(h) = &model.history
    {
        history::render_history(frame, body, h, view.history_selected);
    }
    if view.markers_open {
        markers::render_marker_list(frame, body, model, view.markers_selected);
    }
    if let Some(v) = &view.value {
        value::render_value(frame, body, v);
    }
    if view.prompt.is_some() {
        prompt::render_prompt(frame, body, view);
    }
    if view.help {
        help::render_help(frame, area);
    }
}

pub(super) fn focused_block(title: &str, focused: bool) -> Block<'_> {
    let b = Block::bordered().title(title);
    if focused {
        b.border_type(BorderType::Thick)
            .border_style(theme::BORDER_FOCUSED)
    } else {
        b.border_style(theme::BORDER)
    }
}

/// The frame of an overlay over the body (history, full value): nearly all of it, cleared.
pub(super) fn overlay(frame: &mut Frame, area: Rect) -> Rect {
    let r = centered(
        area,
        area.width.saturating_sub(4).max(40),
        area.height.saturating_sub(2).max(8),
    );
    frame.render_widget(ratatui::widgets::Clear, r);
    r
}

pub(super) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::event::Event;
    use crate::event::generate::{GenOptions, Generator};
    use crate::player::Pace;
    use crate::player::{Report, Stats};
    use crate::state::KvState;
    use crate::tui::app::{Row, Update, handle};
    use crate::tui::input::Action;

    pub(crate) fn events(n: usize) -> Vec<Event> {
        Generator::new(GenOptions::default()).take(n).collect()
    }

    pub(crate) fn stats() -> Stats {
        Stats {
            state: PlayState::Playing,
            reason: None,
            pace: Pace::Realtime { speed: 15.0 },
            logical_time: false,
            position: None,
            next_offset: 0,
            time_ns: None,
            events_played: 0,
            bytes_played: 0,
            rate: 0.0,
            rate_history: vec![],
            target_rate: None,
            lag: Duration::ZERO,
            max_lag: Duration::ZERO,
            credit: Default::default(),
            ring: Default::default(),
            failures: 0,
            buffered: 0,
            source_status: None,
            following: false,
            head_offset: None,
            commit_age: None,
            at_marker: None,
            marker_pauses: 0,
            passes: 0,
            ab_loop: None,
        }
    }

    /// A model as if 60 events of the generated session had been played with state tracked.
    fn played_model() -> Model {
        let evs = events(100);
        let source = crate::source::SourceInfo {
            name: "assets/sample.mcap".into(),
            kind: "archive".into(),
            events: Some(100),
            first_offset: Some(0),
            last_offset: Some(99),
            first_commit_ts: Some(evs[0].commit_ts),
            last_commit_ts: Some(evs[99].commit_ts),
            first_time_ns: evs[0].commit_time_ns,
            last_time_ns: evs[99].commit_time_ns,
            channels: vec![],
            final_hash: None,
            ..Default::default()
        };
        let mut m = Model::new(source, stats());
        let mut state = KvState::new();
        for e in evs.iter().take(60) {
            let diff = state.apply(e);
            m.apply(Update::Played {
                row: Row {
                    event: Arc::new(e.clone()),
                    size: 300,
                    diff: Some(Arc::new(diff)),
                },
                state: Some(state.clone()),
            });
        }
        let s = &mut m.stats;
        s.position = Some(59);
        s.next_offset = 60;
        s.time_ns = evs[59].commit_time_ns;
        s.events_played = 60;
        s.bytes_played = 18_000;
        s.rate = 42.0;
        s.rate_history = vec![10, 30, 45, 40, 42, 44, 41, 39, 42];
        s.lag = Duration::from_micros(350);
        s.max_lag = Duration::from_millis(3);
        s.credit.in_flight_bytes = 3 * 1024 * 1024;
        s.credit.window_bytes = 4 * 1024 * 1024;
        s.ring.bytes_used = 30_000;
        s.ring.capacity = 8 * 1024 * 1024;
        s.ring.oldest_offset = Some(0);
        s.ring.newest_offset = Some(99);
        m
    }

    fn draw(m: &Model, v: &ViewState, w: u16, h: u16) -> Terminal<TestBackend> {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| render(f, m, v)).unwrap();
        t
    }

    /// The screen as text (rows joined by newlines).
    fn screen(t: &Terminal<TestBackend>) -> String {
        let b = t.backend().buffer();
        (0..b.area.height)
            .map(|y| {
                (0..b.area.width)
                    .map(|x| b[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_state_folding_behind_the_cursor_says_so_and_a_worked_out_diff_is_shown() {
        let mut m = played_model();
        // As the inspector gets it: rows without diffs, the state from the folder at #30.
        for r in m.rows.iter_mut() {
            r.diff = None;
        }
        let evs = events(100);
        let mut state = KvState::new();
        for e in evs.iter().take(31) {
            state.apply(e);
        }
        m.folded = true;
        m.state = Some(state.clone());
        m.state_through = Some(30);
        let t = screen(&draw(&m, &ViewState::default(), 160, 45));
        assert!(t.contains("state at #30:"), "{t}");
        assert!(t.contains("(folding: 29 behind the cursor)"), "{t}");
        assert!(!t.contains("changes of #"), "no diff until worked out: {t}");
        m.fold_paused = true;
        let t = screen(&draw(&m, &ViewState::default(), 160, 45));
        assert!(t.contains("(29 behind, waits out full speed)"), "{t}");
        m.fold_paused = false;
        // Caught up, with the selected (last) row's diff worked out by the folder.
        let mut before = KvState::new();
        for e in evs.iter().take(59) {
            before.apply(e);
        }
        m.worked_out_diff = Some(Arc::new(before.apply(&evs[59])));
        m.state = Some(before);
        m.state_through = Some(59);
        let t = screen(&draw(&m, &ViewState::default(), 160, 45));
        assert!(t.contains("state at #59:") && !t.contains("folding"), "{t}");
        assert!(t.contains("changes of #59:"), "{t}");
        // A diff worked out for another row is not shown for this one.
        if let Some(d) = m.worked_out_diff.as_mut() {
            Arc::make_mut(d).offset = 58;
        }
        let t = screen(&draw(&m, &ViewState::default(), 160, 45));
        assert!(!t.contains("changes of #"), "{t}");
    }

    /// What users read (DESIGN.md section 15) at every size the inspector supports: no Rust
    /// syntax, the timeline's position, and a frozen table that says it is frozen.
    #[test]
    fn screens_read_for_people_at_every_size() {
        for (w, h) in [(160, 45), (80, 24), (50, 12)] {
            let mut v = ViewState::default();
            let s = screen(&draw(&played_model(), &v, w, h));
            for bad in ["..=", "Some(", "None", "{:?}"] {
                assert!(!s.contains(bad), "{w}x{h} shows {bad:?}:\n{s}");
            }
            assert!(s.contains("#59"), "{w}x{h}: the position is shown:\n{s}");
            // A table row's keys are whole, or cut with `…`: never mid-word without a sign.
            let m = played_model();
            let mut checked = 0;
            for line in s.lines().filter(|l| l.starts_with('┃')) {
                let Some(offset) = line[3..]
                    .split_whitespace()
                    .next()
                    .and_then(|o| o.parse::<u64>().ok())
                else {
                    continue;
                };
                let Some(row) = m.rows.iter().find(|r| r.event.offset == offset) else {
                    continue;
                };
                let cell = line[3..].split('┃').next().unwrap_or("").trim_end();
                let keys: Vec<String> = row
                    .event
                    .operations
                    .iter()
                    .map(|op| format!("{}{}", if op.value.is_none() { "-" } else { "" }, op.key))
                    .collect();
                let joined = keys.join(", ");
                let last = cell.split_whitespace().last().unwrap_or("");
                assert!(
                    last.contains('…') || joined.ends_with(last) || cell.ends_with(&joined),
                    "{w}x{h}: row #{offset} cut without …: {line:?} (keys {joined:?})"
                );
                checked += 1;
            }
            assert!(checked > 0, "{w}x{h}: no table row found:\n{s}");
            // Long lines end in `…` rather than being cut; neighbouring gauge labels keep a gap.
            let first = s.lines().next().unwrap_or("");
            assert!(
                first.trim_end().ends_with('…') || first.trim_end().chars().count() < w as usize,
                "{w}x{h}: {first}"
            );
            if let Some(i) = s.find("ring ") {
                let before = s[..i].chars().last().unwrap_or(' ');
                assert!(
                    !before.is_alphanumeric(),
                    "{w}x{h}: gauge labels run together:\n{s}"
                );
            }
            if h >= 24 {
                assert!(s.contains("following"), "{w}x{h}:\n{s}");
                v.frozen_at = Some(59);
                let s = screen(&draw(&played_model(), &v, w, h));
                assert!(
                    s.contains("frozen at #59") && !s.contains("following"),
                    "{w}x{h}:\n{s}"
                );
            }
        }
    }

    /// A short session with its times from the values: the header says so, the timeline counts
    /// milliseconds.
    #[test]
    fn a_short_session_timed_from_its_values() {
        let mut m = played_model();
        let t0 = m.source.first_time_ns.unwrap();
        m.source.last_time_ns = Some(t0 + 7_768_000_000);
        m.source.time_source = Some("the values' field at".into());
        let s = screen(&draw(&m, &ViewState::default(), 160, 45));
        assert!(s.contains("(times from the values' field at)"), "{s}");
        assert!(s.contains("/ 07.768s"), "{s}");
    }

    #[test]
    fn main_screen() {
        let v = ViewState {
            layout: LayoutKind::Transport,
            ..ViewState::default()
        };
        let t = draw(&played_model(), &v, 160, 45);
        insta::assert_snapshot!(t.backend());
    }

    #[test]
    fn paused_with_a_selected_row() {
        let mut m = played_model();
        m.stats.state = PlayState::Paused;
        let mut v = ViewState::default();
        for _ in 0..3 {
            handle(Action::Up, &mut m, &mut v);
        }
        let t = draw(&m, &v, 160, 45);
        insta::assert_snapshot!(t.backend());
    }

    #[test]
    fn seek_prompt_with_an_invalid_target() {
        let mut m = played_model();
        let mut v = ViewState::default();
        handle(Action::OpenSeek, &mut m, &mut v);
        for c in "250".chars() {
            handle(Action::PromptChar(c), &mut m, &mut v);
        }
        let t = draw(&m, &v, 160, 45);
        insta::assert_snapshot!(t.backend());
    }

    /// The bundled sample as a source, for the tests that scan it.
    fn sample_source() -> std::sync::Arc<dyn crate::source::Source> {
        std::sync::Arc::new(crate::source::ArchiveSource::new(
            crate::archive::Archive::open_memory(
                include_bytes!("../../assets/sample.mcap"),
                "sample.mcap",
            )
            .unwrap(),
        ))
    }

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// The table is a window over the source: after a seek the rows before the target are
    /// read, scrolling up reads on (the same rows as playing from the start), at most
    /// `MAX_ROWS` are held, Home reads from the first event and End comes back to the cursor.
    #[test]
    fn the_table_is_a_window_over_the_source() {
        use crate::tui::app::{LOAD_ROWS, MAX_ROWS};
        let source = sample_source();
        // Every event of the sample, as playing from the start gives them.
        let all = block_on(crate::inspect::window::after(
            &source,
            &Default::default(),
            0,
            5999,
            6000,
        ))
        .unwrap()
        .events;
        let mut m = Model::new(source.info().clone(), stats());
        let mut v = ViewState::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let load = |m: &mut Model, v: &mut ViewState| {
            while let Some(l) = m.take_row_load() {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                rt.block_on(crate::tui::load_rows(
                    source.clone(),
                    Default::default(),
                    l,
                    tx,
                ));
                while let Ok(u) = rx.try_recv() {
                    m.apply(u);
                }
                crate::tui::app::settle_scroll(m, v);
            }
        };
        let same_as_played = |m: &Model| {
            for r in &m.rows {
                let (e, _) = &all[r.event.offset as usize];
                assert_eq!(r.event.txn_id, e.txn_id, "row #{}", r.event.offset);
            }
            let offsets: Vec<u64> = m.rows.iter().map(|r| r.event.offset).collect();
            assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "contiguous");
        };
        // A seek to the last event: it plays, and the rows before it are read.
        m.apply(Update::Repositioned {
            next_offset: 5999,
            state: None,
        });
        m.apply(Update::Played {
            row: Row {
                event: all[5999].0.clone(),
                size: all[5999].1,
                diff: None,
            },
            state: None,
        });
        // Three pages up before the rows before it are here: the presses are not lost.
        for _ in 0..3 {
            handle(Action::PageUp, &mut m, &mut v);
        }
        load(&mut m, &mut v);
        assert_eq!(v.selected, Some(5999 - 60));
        assert_eq!(m.rows.len(), LOAD_ROWS + 1);
        assert_eq!(
            m.rows.front().unwrap().event.offset,
            5999 - LOAD_ROWS as u64
        );
        same_as_played(&m);
        // Up past the first row held, all the way to the first event.
        let mut presses = 0;
        while v.selected != Some(0) {
            handle(Action::PageUp, &mut m, &mut v);
            load(&mut m, &mut v);
            presses += 1;
            assert!(presses < 1000, "stuck at {:?}", v.selected);
            assert!(m.rows.len() <= MAX_ROWS);
        }
        assert!(m.window.at_start && m.window.detached);
        assert_eq!(m.rows.len(), MAX_ROWS);
        same_as_played(&m);
        let t = draw(&m, &v, 160, 45);
        let s = screen(&t);
        assert!(s.contains("scrolled back: End returns"), "{s}");
        assert!(s.contains("#0 @"), "the first event is selected: {s}");
        // End: back to the cursor, the rows before it read again.
        handle(Action::End, &mut m, &mut v);
        load(&mut m, &mut v);
        assert_eq!(v.selected, None);
        assert!(!m.window.detached);
        assert_eq!(m.rows.back().unwrap().event.offset, 5999);
        same_as_played(&m);
        // Home: from the first event, without scrolling there.
        handle(Action::Home, &mut m, &mut v);
        load(&mut m, &mut v);
        assert_eq!(m.rows.front().unwrap().event.offset, 0);
        assert_eq!(m.selected_row(&v).unwrap().event.offset, 0);
        same_as_played(&m);
        // Down to where the rows end and on: read on to the cursor, then following again.
        while m.window.detached {
            handle(Action::PageDown, &mut m, &mut v);
            load(&mut m, &mut v);
            presses += 1;
            assert!(presses < 2000, "stuck at {:?}", v.selected);
        }
        same_as_played(&m);
        assert_eq!(m.rows.back().unwrap().event.offset, 5999);
    }

    /// `--against`: the marker column says which rows the other source agrees with, which
    /// not, which are not compared yet; the transaction pane shows what differs; D goes to the
    /// next divergence (as n goes to the next match).
    #[test]
    fn rows_compared_with_another_source() {
        use crate::inspect::diff::{Divergence, DivergenceKind};
        use crate::inspect::json_diff::FieldChange;
        let mut m = played_model();
        let row = |o: u64| {
            m.rows
                .iter()
                .find(|r| r.event.offset == o)
                .unwrap()
                .event
                .clone()
        };
        let divergence = Divergence {
            kind: DivergenceKind::Changed,
            index: 40,
            left: Some(row(40)),
            right: Some(row(40)),
            changes: vec![FieldChange::Changed {
                path: "/operations/0/value/status".into(),
                old: "open".into(),
                new: "closed".into(),
            }],
            keys: vec![],
            last_equal: Some((39, 39)),
            at_left: 40,
        };
        m.against = Some(crate::tui::app::Against {
            name: "other.mcap".into(),
            ..Default::default()
        });
        m.apply(Update::AgainstFound(vec![divergence]));
        m.apply(Update::AgainstThrough(50));
        let mut v = ViewState {
            selected: Some(40),
            ..ViewState::default()
        };
        let s = screen(&draw(&m, &v, 160, 45));
        assert!(
            s.contains("against other.mcap: 1 divergence so far (compared through #50)"),
            "{s}"
        );
        assert!(s.contains("≠ other.mcap differs:"), "{s}");
        assert!(
            s.contains("~ /operations/0/value/status: \"open\" -> \"closed\""),
            "{s}"
        );
        let marks: Vec<&str> = s
            .lines()
            .filter_map(|l| l.strip_prefix('┃'))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert!(
            marks.contains(&"≠") && marks.contains(&"=") && marks.contains(&"·"),
            "{marks:?}"
        );
        // D from before it goes there.
        v.selected = Some(10);
        let cmds = handle(Action::NextDivergence, &mut m, &mut v);
        assert_eq!(
            cmds[0],
            crate::player::Command::Seek(crate::player::SeekTarget::Position(
                crate::event::Position::Offset(40)
            ))
        );
        v.selected = Some(40);
        insta::assert_snapshot!(draw(&m, &v, 160, 45).backend());
    }

    /// A key's history as the overlay shows it, from the scan of a real-shaped session: the
    /// versions listed, the selected one's changes field by field; Enter seeks to it.
    #[test]
    fn key_history_overlay() {
        let source = sample_source();
        let req = crate::inspect::history::HistoryRequest {
            key: "plan/step-002".into(),
            agent: Some(("support".into(), "reviewer-13d6".into())),
            from: 0,
            until: Some(5999),
            chain: Default::default(),
        };
        let mut versions = Vec::new();
        block_on(crate::inspect::history::scan(&source, &req, |v| {
            versions.push(v.clone());
            true
        }))
        .unwrap();
        assert!(versions.len() >= 2, "{} versions", versions.len());
        let mut m = played_model();
        let mut v = ViewState::default();
        handle(Action::OpenHistory, &mut m, &mut v);
        v.prompt.as_mut().unwrap().input = "plan/step-002".into();
        handle(Action::PromptSubmit, &mut m, &mut v);
        assert!(v.history_open);
        assert_eq!(v.history_scan.take().as_deref(), Some("plan/step-002"));
        let first = versions[1].offset;
        m.apply(Update::HistoryVersions("plan/step-002".into(), versions));
        m.apply(Update::HistoryDone("plan/step-002".into(), Ok(())));
        handle(Action::Down, &mut m, &mut v);
        let t = draw(&m, &v, 160, 45);
        let s = screen(&t);
        assert!(s.contains("history of plan/step-002"), "{s}");
        insta::assert_snapshot!(t.backend());
        let cmds = handle(Action::PromptSubmit, &mut m, &mut v);
        assert!(!v.history_open);
        assert_eq!(
            cmds[0],
            crate::player::Command::Seek(crate::player::SeekTarget::Position(
                crate::event::Position::Offset(first)
            ))
        );
    }

    /// `/` narrows the table as the query is typed; Enter searches the whole source in the
    /// background; `n` / `N` seek to the next / previous match from the selection, wait for the
    /// scan when it has not got there, and wrap around once it is over.
    #[test]
    fn search_of_the_whole_source() {
        use crate::tui::app::SearchDirection;
        let source = sample_source();
        let query = crate::inspect::search::Query::parse("escalate").unwrap();
        let mut found = Vec::new();
        block_on(crate::inspect::search::scan(
            &source,
            &query,
            &Default::default(),
            |e| {
                found.push(e.offset);
                true
            },
        ))
        .unwrap();
        let mut m = played_model();
        let position = m.position().unwrap();
        let ahead: Vec<u64> = found.iter().copied().filter(|&o| o > position).collect();
        assert!(
            ahead.len() >= 2 && found[0] < position,
            "{found:?} around {position}"
        );
        let mut v = ViewState::default();
        handle(Action::OpenFilter, &mut m, &mut v);
        let all = m.visible_rows(&v).count();
        for c in "escalate".chars() {
            handle(Action::PromptChar(c), &mut m, &mut v);
        }
        let narrowed = m.visible_rows(&v).count();
        assert!(narrowed > 0 && narrowed < all, "{narrowed} of {all} rows");
        assert!(m.visible_rows(&v).all(|r| query.matches(&r.event)));
        handle(Action::PromptSubmit, &mut m, &mut v);
        assert!(v.prompt.is_none());
        let (id, _) = v.search_scan.take().unwrap();
        // A scan of an earlier search, still queued, is not this one's.
        m.apply(Update::SearchFound(id - 1, vec![1, 2, 3]));
        assert!(m.search.as_ref().unwrap().matches.is_empty());
        // The scan has found only what is before the cursor: `n` waits for it.
        let before: Vec<u64> = found.iter().copied().filter(|&o| o <= position).collect();
        m.apply(Update::SearchFound(id, before.clone()));
        assert!(handle(Action::SearchNext, &mut m, &mut v).is_empty());
        assert_eq!(
            v.search_jump,
            Some((crate::tui::app::JumpList::Search, SearchDirection::Forward))
        );
        m.apply(Update::SearchFound(id, ahead.clone()));
        // `N` from a match needs nothing more of the scan: everything before it is known.
        v.selected = Some(ahead[1]);
        assert_eq!(handle(Action::SearchPrevious, &mut m, &mut v)[0], {
            crate::player::Command::Seek(crate::player::SeekTarget::Position(
                crate::event::Position::Offset(ahead[0]),
            ))
        });
        v.selected = None;
        // A waiting `n` is cancelled by any other key.
        v.search_jump = Some((crate::tui::app::JumpList::Search, SearchDirection::Forward));
        handle(Action::Down, &mut m, &mut v);
        assert_eq!(v.search_jump, None);
        v.selected = None;
        // Esc on the search prompt puts the table filter back as it was.
        handle(Action::OpenFilter, &mut m, &mut v);
        handle(Action::PromptChar('x'), &mut m, &mut v);
        assert_eq!(v.filter.as_deref(), Some("x"));
        handle(Action::Escape, &mut m, &mut v);
        assert_eq!(v.filter.as_deref(), Some("escalate"));
        let seek = |o: u64| {
            crate::player::Command::Seek(crate::player::SeekTarget::Position(
                crate::event::Position::Offset(o),
            ))
        };
        let cmds = crate::tui::app::search_jump(
            crate::tui::app::JumpList::Search,
            SearchDirection::Forward,
            &mut m,
            &mut v,
        );
        assert_eq!(cmds[0], seek(ahead[0]));
        assert_eq!(v.search_jump, None);
        let t = draw(&m, &v, 160, 45);
        let s = screen(&t);
        assert!(s.contains("search \"escalate\": "), "{s}");
        assert!(s.contains("so far, scanning the source…"), "{s}");
        m.apply(Update::SearchDone(id, Ok(())));
        // From the selected row: the previous match before it.
        v.selected = Some(ahead[1]);
        assert_eq!(
            handle(Action::SearchPrevious, &mut m, &mut v)[0],
            seek(ahead[0])
        );
        // Past the last: around to the first, and it says so.
        v.selected = Some(*found.last().unwrap());
        assert_eq!(
            handle(Action::SearchNext, &mut m, &mut v)[0],
            seek(found[0])
        );
        let t = draw(&m, &v, 160, 45);
        let s = screen(&t);
        let n = crate::text::thousands(found.len() as u64);
        assert!(s.contains(&format!("{n} matches in the source")), "{s}");
        assert!(s.contains("past the last match: back to the first"), "{s}");
        insta::assert_snapshot!(t.backend());
        // `g` then `/QUERY` is the next match too; a bad regex is refused in the prompt.
        v.selected = None;
        handle(Action::OpenSeek, &mut m, &mut v);
        v.prompt.as_mut().unwrap().input = "/re:(".into();
        assert!(handle(Action::PromptSubmit, &mut m, &mut v).is_empty());
        assert!(
            v.prompt
                .as_ref()
                .unwrap()
                .error
                .as_ref()
                .unwrap()
                .contains("regular expression")
        );
        v.prompt.as_mut().unwrap().input = "/escalate".into();
        assert_eq!(
            handle(Action::PromptSubmit, &mut m, &mut v)[0],
            seek(ahead[0])
        );
    }

    /// Enter opens the whole transaction (or, from the state pane, the whole state in the
    /// `--bootstrap` format) pretty-printed; `/` finds a line, `n` the next; `y` hands the text
    /// to the clipboard writer and says so.
    #[test]
    fn full_value_view() {
        let mut m = played_model();
        let mut v = ViewState::default();
        handle(Action::OpenValue, &mut m, &mut v);
        let opened = v.value.clone().expect("the value view opens");
        let row = m.selected_row(&ViewState::default()).unwrap().event.clone();
        assert_eq!(opened.title, format!("transaction #{}", row.offset));
        let back: crate::event::Event = serde_json::from_str(&opened.text).unwrap();
        assert_eq!(back, *row);
        handle(Action::OpenFilter, &mut m, &mut v);
        for c in "\"key\"".chars() {
            handle(Action::PromptChar(c), &mut m, &mut v);
        }
        handle(Action::PromptSubmit, &mut m, &mut v);
        let value = v.value.as_ref().unwrap();
        let first = value.found_line.expect("found");
        assert!(value.lines[first].contains("\"key\""));
        handle(Action::SearchNext, &mut m, &mut v);
        let next = v.value.as_ref().unwrap().found_line.unwrap();
        assert!(next != first && v.value.as_ref().unwrap().lines[next].contains("\"key\""));
        handle(Action::Copy, &mut m, &mut v);
        assert_eq!(v.clipboard.as_deref(), Some(opened.text.as_str()));
        let t = draw(&m, &v, 160, 45);
        let s = screen(&t);
        assert!(s.contains("copied transaction #"), "{s}");
        assert!(s.contains("▸ "), "{s}");
        insta::assert_snapshot!(t.backend());
        handle(Action::Escape, &mut m, &mut v);
        assert!(v.value.is_none());
        // The state pane: the whole state, readable back as a bootstrap state.
        v.focus = Focus::State;
        handle(Action::OpenValue, &mut m, &mut v);
        let state = v.value.as_ref().expect("the state view opens");
        assert!(state.title.starts_with("state at #"), "{}", state.title);
        let seeded = crate::state::KvState::from_bootstrap_json(&state.text).unwrap();
        assert_eq!(seeded.len(), m.state.as_ref().unwrap().len());
        let small = draw(&m, &v, 80, 24);
        let s = screen(&small);
        assert!(s.contains("state at #"), "{s}");
    }

    /// `m` marks the state at the cursor, `d` lists what changed between the mark and the
    /// cursor, key by key and field by field (the same diff as `state --diff`).
    #[test]
    fn state_diff_view() {
        let mut m = played_model();
        let mut v = ViewState::default();
        handle(Action::StateDiff, &mut m, &mut v);
        assert!(
            v.notice.as_deref().unwrap().starts_with("m first"),
            "{:?}",
            v.notice
        );
        handle(Action::Mark, &mut m, &mut v);
        let at = m.state_offset().unwrap();
        // Before anything is folded the start state is marked as such.
        let mut fresh = played_model();
        fresh.folded = true;
        fresh.state_through = None;
        let mut fv = ViewState::default();
        handle(Action::Mark, &mut fresh, &mut fv);
        assert!(
            fv.notice.as_deref().unwrap().contains("the start"),
            "{:?}",
            fv.notice
        );
        assert!(v.notice.as_deref().unwrap().contains(&format!("#{at}")));
        handle(Action::StateDiff, &mut m, &mut v);
        assert_eq!(
            v.value.as_ref().unwrap().lines,
            ["the two states are the same"]
        );
        handle(Action::Escape, &mut m, &mut v);
        // A mark earlier on: the state after the first 20 rows.
        let mut early = crate::state::KvState::new();
        for r in m.rows.iter().take(20) {
            early.apply(&r.event);
        }
        let mark = m.rows[19].event.offset;
        v.mark = Some((Some(mark), early.clone()));
        handle(Action::StateDiff, &mut m, &mut v);
        let want =
            crate::inspect::state_at::diff_states(&early, m.state.as_ref().unwrap()).unwrap();
        assert!(!want.is_empty());
        let view = v.value.as_ref().unwrap();
        assert!(
            view.title
                .starts_with(&format!("state #{mark} -> #{at}: {} keys", want.len()))
        );
        assert_eq!(view.text.lines().count(), want.len());
        assert!(
            view.lines
                .iter()
                .any(|l| l.starts_with("+ ") || l.starts_with("~ "))
        );
        let t = draw(&m, &v, 160, 45);
        insta::assert_snapshot!(t.backend());
    }

    #[test]
    fn help_overlay() {
        let v = ViewState {
            help: true,
            ..ViewState::default()
        };
        let t = draw(&played_model(), &v, 160, 45);
        insta::assert_snapshot!(t.backend());
    }

    #[test]
    fn stopped_with_report() {
        let mut m = played_model();
        m.stats.state = PlayState::Stopped;
        m.stats.reason = Some("stopped by the user".into());
        m.apply(Update::RunEnded(Box::new(Report {
            source: "assets/sample.mcap".into(),
            outcome: crate::player::Outcome::Stopped,
            reason: Some("stopped by the user".into()),
            events_sent: 60,
            events_replayed: 0,
            failures: 0,
            bytes: 18_000,
            duration_ms: 4_000,
            first_offset: Some(0),
            last_offset: Some(59),
            next_offset: Some(60),
            achieved_rate: 15.0,
            max_lag_ms: 3.0,
            p99_lag_ms: 0.4,
            final_hash: Some("ab".repeat(32)),
            state_hash: Some("cd".repeat(32)),
            pace: Pace::Realtime { speed: 15.0 },
            passes: 1,
            output_closed: false,
        })));
        let t = draw(&m, &ViewState::default(), 160, 45);
        insta::assert_snapshot!(t.backend());
    }

    #[test]
    fn error_banner() {
        let mut m = played_model();
        m.error = Some("source failed: sample.mcap: CRC mismatch in chunk at byte 4242 (stored 00000001, computed 00000002)".into());
        let t = draw(&m, &ViewState::default(), 160, 45);
        insta::assert_snapshot!(t.backend());
    }

    #[test]
    fn narrow_80x24() {
        let t = draw(&played_model(), &ViewState::default(), 80, 24);
        insta::assert_snapshot!(t.backend());
        // every size down to tiny renders without panicking
        for (w, h) in [(40, 10), (20, 5), (1, 1), (200, 60)] {
            draw(&played_model(), &ViewState::default(), w, h);
        }
    }

    /// The played model with two markers (at #10 and #59) and paused at the second.
    fn model_with_markers() -> Model {
        use crate::event::marker::Marker;
        let mut m = played_model();
        let mk = |name: &str, at: u64, caption: &str| Marker {
            name: name.into(),
            position: at.to_string(),
            caption: Some(caption.into()),
        };
        m.marker_offsets = vec![
            (10, mk("intro", 10, "The agents start")),
            (59, mk("answer", 59, "The answer is written here")),
        ];
        m.stats.state = PlayState::Paused;
        m.stats.at_marker = Some(59);
        m
    }

    /// Every layout at the smallest and a large size (the marker's caption shows in each).
    #[test]
    fn every_layout_at_80x24_and_200x60() {
        for layout in LayoutKind::ALL {
            for (w, h) in [(80, 24), (200, 60)] {
                let v = ViewState {
                    layout,
                    ..ViewState::default()
                };
                let t = draw(&model_with_markers(), &v, w, h);
                let s = screen(&t);
                assert!(
                    s.contains("The answer is written here"),
                    "{layout:?} {w}x{h}:\n{s}"
                );
                match layout {
                    LayoutKind::Transport => assert!(s.contains("credit"), "{s}"),
                    LayoutKind::Inspect => {
                        assert!(s.contains("credit") && s.contains(" · ring "), "{s}")
                    }
                    LayoutKind::Present => {
                        assert!(!s.contains("credit") && !s.contains(" help "), "{s}")
                    }
                }
                insta::assert_snapshot!(format!("layout_{}_{w}x{h}", layout.name()), t.backend());
            }
        }
    }

    #[test]
    fn marker_list() {
        let v = ViewState {
            markers_open: true,
            markers_selected: 1,
            ..ViewState::default()
        };
        let s = screen(&draw(&model_with_markers(), &v, 80, 24));
        assert!(s.contains("markers (2)"), "{s}");
        assert!(
            s.contains("#10") && s.contains("intro") && s.contains("The agents start"),
            "{s}"
        );
    }

    /// Clicks land where the screen shows things: the timeline's columns stand for offsets
    /// from the first to the last, a table row for its event; elsewhere, nothing.
    #[test]
    fn clicks_map_to_the_offsets_shown() {
        let m = played_model();
        for layout in LayoutKind::ALL {
            for (w, h) in [(80u16, 24u16), (200, 60)] {
                let v = ViewState {
                    layout,
                    screen: (w, h),
                    ..ViewState::default()
                };
                let area = Rect::new(0, 0, w, h);
                let t = draw(&m, &v, w, h);
                let s = screen(&t);
                let lines: Vec<&str> = s.lines().collect();
                // The bar: the line that ends in a long run of bar glyphs (after the label on
                // the compact timeline); its first and last columns.
                let glyph = |c: &char| "━┃─▆◆╫".contains(*c);
                let (y, chars, bar_start) = lines
                    .iter()
                    .enumerate()
                    .rev()
                    .filter_map(|(y, l)| {
                        let chars: Vec<char> = l.chars().collect();
                        let start = chars.iter().rposition(|c| !glyph(c)).map_or(0, |i| i + 1);
                        (chars.len() - start > 20).then_some((y as u16, chars, start as u16))
                    })
                    .next()
                    .expect("a timeline");
                let bar_end = w - 1;
                assert_eq!(
                    hit(area, &m, &v, bar_start, y),
                    Some(Hit::Timeline(0)),
                    "{layout:?} {w}x{h}"
                );
                assert_eq!(
                    hit(area, &m, &v, bar_end, y),
                    Some(Hit::Timeline(99)),
                    "{layout:?} {w}x{h}"
                );
                // The cursor glyph's column stands for the position (#59), give or take a
                // column's worth of offsets.
                let cursor = chars.iter().rposition(|c| *c == '┃').unwrap() as u16;
                let per_column = 99.0 / f64::from(bar_end - bar_start);
                match hit(area, &m, &v, cursor, y) {
                    Some(Hit::Timeline(o)) => assert!(
                        (o as f64 - 59.0).abs() <= per_column / 2.0 + 0.5,
                        "{layout:?} {w}x{h}: cursor at {o}"
                    ),
                    other => panic!("{layout:?} {w}x{h}: {other:?}"),
                }
                if bar_start > 0 {
                    assert_eq!(hit(area, &m, &v, bar_start - 1, y), None, "the label");
                }
                // Table rows: the offset printed on the row is the one hit.
                let mut rows = 0;
                for (ry, l) in lines.iter().enumerate() {
                    let Some(rest) = l.strip_prefix('┃') else {
                        continue;
                    };
                    let Some(o) = rest
                        .split_whitespace()
                        .next()
                        .and_then(|o| o.parse::<u64>().ok())
                    else {
                        continue;
                    };
                    assert_eq!(
                        hit(area, &m, &v, 3, ry as u16),
                        Some(Hit::Row(o)),
                        "{layout:?} {w}x{h} line {ry}"
                    );
                    rows += 1;
                }
                assert!(rows > 5, "{layout:?} {w}x{h}: {rows} rows\n{s}");
                // The table's title line, the header and the left border take no click.
                let top = lines.iter().position(|l| l.starts_with('┏')).unwrap() as u16;
                assert_eq!(hit(area, &m, &v, 3, top), None);
                assert_eq!(hit(area, &m, &v, 3, top + 1), None, "the column titles");
                assert_eq!(hit(area, &m, &v, 0, top + 2), None, "the border");
                // An open overlay takes the clicks away from what is under it.
                let over = ViewState {
                    help: true,
                    ..v.clone()
                };
                assert_eq!(hit(area, &m, &over, 3, top + 2), None);
            }
        }
    }
}
