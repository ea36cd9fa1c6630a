//! Pure render functions: one per screen region, reading the model and the view state, changing
//! nothing.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, BorderType, Cell, Clear, Gauge, LineGauge, Paragraph, Row as TableRow, Sparkline, Table,
    TableState, Wrap,
};

use crate::event::format_time_ns;
use crate::player::{Pace, PlayState};
use crate::state::Change;
use crate::tui::app::{Focus, Model, PromptKind, ViewState};
use crate::tui::input::HELP;

/// Below this size the detail and state panes fold away (tab switches the one big panel).
const WIDE: u16 = 110;
const TALL: u16 = 32;

pub fn render(frame: &mut Frame, model: &Model, view: &ViewState) {
    let area = frame.area();
    let compact = area.width < WIDE || area.height < TALL;
    let gauges_h = if compact { 2 } else { 4 };
    let [header, body, gauges, timeline, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(5),
        Constraint::Length(gauges_h),
        Constraint::Length(if compact { 1 } else { 2 }),
        Constraint::Length(1),
    ])
    .areas(area);
    render_header(frame, header, model, view);
    if compact {
        match view.focus {
            Focus::Table => render_table(frame, body, model, view),
            Focus::Detail => render_detail(frame, body, model, view),
            Focus::State => render_state(frame, body, model, view),
        }
    } else {
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
                .areas(body);
        let [detail, state] =
            Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(right);
        render_table(frame, left, model, view);
        render_detail(frame, detail, model, view);
        render_state(frame, state, model, view);
    }
    render_gauges(frame, gauges, model, compact);
    render_timeline(frame, timeline, model, compact);
    render_footer(frame, footer, view, compact);
    if let Some(report) = &model.report
        && model.stats.state != PlayState::Playing
    {
        render_report(frame, body, model, report);
    }
    if let Some(err) = &model.error {
        render_banner(frame, body, err);
    }
    if view.prompt.is_some() {
        render_prompt(frame, body, view);
    }
    if view.help {
        render_help(frame, area);
    }
}

fn state_style(s: PlayState) -> Style {
    match s {
        PlayState::Playing => Style::new().fg(Color::Green).bold(),
        PlayState::Paused => Style::new().fg(Color::Yellow).bold(),
        PlayState::Stopped => Style::new().fg(Color::Red).bold(),
        PlayState::Finished => Style::new().fg(Color::Cyan).bold(),
        PlayState::CaughtUp => Style::new().fg(Color::Cyan).bold(),
        PlayState::Seeking => Style::new().fg(Color::Magenta).bold(),
    }
}

fn pace_text(model: &Model) -> String {
    let mut s = model.stats.pace.label();
    if matches!(model.stats.pace, Pace::Realtime { .. }) && model.stats.logical_time {
        s.push_str(" (logical tick: no wall-clock times)");
    }
    s
}

fn render_header(frame: &mut Frame, area: Rect, model: &Model, view: &ViewState) {
    let s = &model.stats;
    let mut state = vec![Span::styled(
        format!(" {} ", s.state.label().to_uppercase()),
        state_style(s.state).reversed(),
    )];
    if let Some(r) = &s.reason
        && matches!(s.state, PlayState::Stopped | PlayState::Finished)
    {
        state.push(Span::raw(format!(" {r}")));
    }
    if let Some(status) = &s.source_status
        && !matches!(s.state, PlayState::Stopped | PlayState::Finished)
    {
        state.push(Span::styled(
            format!("  {status}"),
            Style::new().fg(Color::Yellow).bold(),
        ));
    }
    if view.frozen_at.is_some() {
        state.push(Span::styled(
            format!("  FROZEN (+{} pending)", model.pending(view)),
            Style::new().fg(Color::Magenta).bold(),
        ));
    }
    if let Some(f) = &view.filter {
        state.push(Span::styled(
            format!("  filter: {f}"),
            Style::new().fg(Color::Blue),
        ));
    }
    let line1 = Line::from(vec![
        Span::styled("replayscope ", Style::new().bold()),
        Span::raw(format!("{} ({})", model.source.name, model.source.kind)),
        Span::raw("  pace: "),
        Span::styled(pace_text(model), Style::new().bold()),
    ]);
    frame.render_widget(Paragraph::new(vec![line1, Line::from(state)]), area);
}

fn short_txn(t: &str) -> &str {
    t.get(..13).unwrap_or(t)
}

fn keys_text(e: &crate::event::Event) -> String {
    let mut s = String::new();
    for (i, op) in e.operations.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        if op.value.is_none() {
            s.push('-');
        }
        s.push_str(&op.key);
    }
    s
}

fn event_time(e: &crate::event::Event) -> String {
    match e.commit_time_ns {
        Some(ns) => {
            let t = format_time_ns(ns);
            t.get(11..23).unwrap_or(&t).to_string()
        }
        None => format!("@{}", e.commit_ts),
    }
}

fn focused_block(title: &str, focused: bool) -> Block<'_> {
    let b = Block::bordered().title(title);
    if focused {
        b.border_type(BorderType::Thick)
            .border_style(Style::new().fg(Color::Cyan))
    } else {
        b.border_style(Style::new().fg(Color::DarkGray))
    }
}

fn render_table(frame: &mut Frame, area: Rect, model: &Model, view: &ViewState) {
    let rows: Vec<&crate::tui::app::Row> = model.visible_rows(view).collect();
    let selected_idx = match view.selected {
        Some(o) => rows.iter().position(|r| r.event.offset == o),
        None => rows.len().checked_sub(1),
    };
    // Only the rows that fit are built.
    let height = area.height.saturating_sub(3) as usize;
    let end = match selected_idx {
        Some(i) if view.selected.is_some() => (i + height / 2 + 1)
            .min(rows.len())
            .max(height.min(rows.len())),
        _ => rows.len(),
    };
    let start = end.saturating_sub(height);
    let table_rows: Vec<TableRow> = rows[start..end]
        .iter()
        .map(|r| {
            let e = &r.event;
            TableRow::new(vec![
                Cell::from(format!("{}", e.offset)),
                Cell::from(event_time(e)),
                Cell::from(format!("{}/{}", e.namespace, e.agent_id)),
                Cell::from(short_txn(&e.txn_id).to_string()),
                Cell::from(format!("{}", e.operations.len())),
                Cell::from(keys_text(e)),
            ])
        })
        .collect();
    let title = format!(
        " events ({} shown{}) ",
        rows.len(),
        if view.selected.is_none() {
            ", following"
        } else {
            ""
        }
    );
    let table = Table::new(
        table_rows,
        [
            Constraint::Length(7),
            Constraint::Length(12),
            Constraint::Length(24),
            Constraint::Length(13),
            Constraint::Length(3),
            Constraint::Min(10),
        ],
    )
    .header(
        TableRow::new(vec![
            "offset",
            "commit time",
            "agent",
            "txn_id",
            "ops",
            "keys",
        ])
        .style(Style::new().bold().fg(Color::Gray)),
    )
    .row_highlight_style(Style::new().bg(Color::Blue).fg(Color::White))
    .block(focused_block(&title, view.focus == Focus::Table));
    let mut state = TableState::default();
    state.select(selected_idx.map(|i| i.saturating_sub(start)));
    frame.render_stateful_widget(table, area, &mut state);
}

fn render_detail(frame: &mut Frame, area: Rect, model: &Model, view: &ViewState) {
    let block = focused_block(" transaction ", view.focus == Focus::Detail);
    let Some(row) = model.selected_row(view) else {
        frame.render_widget(Paragraph::new("no event yet").block(block), area);
        return;
    };
    let e = &row.event;
    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!("#{} ", e.offset), Style::new().bold()),
            Span::raw(format!("@{} ", e.commit_ts)),
            Span::raw(
                e.commit_time_ns
                    .map(format_time_ns)
                    .unwrap_or_else(|| "(no wall time)".into()),
            ),
        ]),
        Line::from(format!(
            "{}/{}  txn {}  {} bytes",
            e.namespace, e.agent_id, e.txn_id, row.size
        )),
    ];
    for op in &e.operations {
        match &op.value {
            Some(v) => {
                lines.push(Line::from(vec![
                    Span::styled("set ", Style::new().fg(Color::Green).bold()),
                    Span::styled(op.key.to_string(), Style::new().bold()),
                    Span::raw(format!("  v{}", op.version)),
                ]));
                let json = match v.object(&op.key) {
                    Ok(o) => serde_json::to_string_pretty(o).unwrap_or_default(),
                    Err(err) => format!("<undecodable value: {err}>"),
                };
                for l in json.lines() {
                    lines.push(Line::from(format!("  {l}")));
                }
            }
            None => lines.push(Line::from(vec![
                Span::styled("delete ", Style::new().fg(Color::Red).bold()),
                Span::styled(op.key.to_string(), Style::new().bold()),
                Span::raw(format!("  v{}", op.version)),
            ])),
        }
    }
    let scroll = view.detail_scroll.min(lines.len().saturating_sub(1) as u16);
    frame.render_widget(
        Paragraph::new(Text::from(lines))
            .block(block)
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0)),
        area,
    );
}

fn render_state(frame: &mut Frame, area: Rect, model: &Model, view: &ViewState) {
    let Some(state) = &model.state else {
        frame.render_widget(
            Paragraph::new("state not tracked")
                .block(focused_block(" state ", view.focus == Focus::State)),
            area,
        );
        return;
    };
    let behind = model.state_behind();
    let title = if behind > 0 && model.fold_paused {
        format!(
            " state at #{}: {} keys ({behind} behind, waits out full speed) ",
            model
                .state_through
                .map_or("start".into(), |p| p.to_string()),
            state.len()
        )
    } else if behind > 0 {
        format!(
            " state at #{}: {} keys (folding: {behind} behind the cursor) ",
            model
                .state_through
                .map_or("start".into(), |p| p.to_string()),
            state.len()
        )
    } else {
        format!(
            " state at #{}: {} keys ",
            model.position().map_or("-".into(), |p| p.to_string()),
            state.len()
        )
    };
    let block = focused_block(&title, view.focus == Focus::State);
    let diff = model.selected_diff(view);
    let mut lines: Vec<Line> = Vec::new();
    if let Some(d) = &diff {
        lines.push(Line::styled(
            format!("changes of #{}:", d.offset),
            Style::new().bold(),
        ));
        for c in &d.changes {
            let (sign, color, key, text) = match c {
                Change::Added { key, value } => {
                    ("+", Color::Green, key, value.to_json_string(&key.key))
                }
                Change::Changed { key, new, .. } => {
                    ("~", Color::Yellow, key, new.to_json_string(&key.key))
                }
                Change::Deleted { key, .. } => ("-", Color::Red, key, "(deleted)".to_string()),
                Change::DeletedMissing { key } => (
                    "-",
                    Color::DarkGray,
                    key,
                    "(delete of a missing key)".to_string(),
                ),
            };
            lines.push(Line::from(vec![
                Span::styled(
                    format!("{sign} {}/{}:{} ", key.namespace, key.agent_id, key.key),
                    Style::new().fg(color).bold(),
                ),
                Span::raw(text),
            ]));
        }
        lines.push(Line::raw(""));
    }
    let changed: Vec<&crate::state::StateKey> = diff
        .as_ref()
        .map(|d| d.changes.iter().map(|c| c.key()).collect())
        .unwrap_or_default();
    let budget = (area.height as usize).saturating_sub(2) + view.state_scroll as usize;
    for (k, entry) in state.iter().take(budget + 1) {
        let style = if changed.contains(&k) {
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
        } else {
            Style::new()
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{}/{}:{} ", k.namespace, k.agent_id, k.key), style),
            Span::styled(
                format!("v{} ", entry.version),
                Style::new().fg(Color::DarkGray),
            ),
            Span::raw(entry.value.to_json_string(&k.key)),
        ]));
    }
    frame.render_widget(
        Paragraph::new(Text::from(lines))
            .block(block)
            .scroll((view.state_scroll, 0)),
        area,
    );
}

pub fn human_bytes(b: u64) -> String {
    const K: f64 = 1024.0;
    let f = b as f64;
    if f < K {
        format!("{b} B")
    } else if f < K * K {
        format!("{:.1} KiB", f / K)
    } else if f < K * K * K {
        format!("{:.1} MiB", f / K / K)
    } else {
        format!("{:.2} GiB", f / K / K / K)
    }
}

/// Bytes in at most 5 characters (`3.0M`, `29K`).
pub fn short_bytes(b: u64) -> String {
    let f = b as f64;
    if f < 1024.0 {
        format!("{b}B")
    } else if f < 1024.0 * 1024.0 {
        format!("{:.0}K", f / 1024.0)
    } else if f < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1}M", f / 1024.0 / 1024.0)
    } else {
        format!("{:.1}G", f / 1024.0 / 1024.0 / 1024.0)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        (a as f64 / b as f64).clamp(0.0, 1.0)
    }
}

fn render_gauges(frame: &mut Frame, area: Rect, model: &Model, compact: bool) {
    let s = &model.stats;
    let credit_label = format!(
        "credit {} / {} in flight",
        human_bytes(s.credit.in_flight_bytes),
        human_bytes(s.credit.window_bytes)
    );
    let ring_label = format!(
        "ring {} / {}{}",
        human_bytes(s.ring.bytes_used),
        human_bytes(s.ring.capacity),
        match (s.ring.oldest_offset, s.ring.newest_offset) {
            (Some(a), Some(b)) => format!("  #{a}..#{b}"),
            _ => String::new(),
        }
    );
    let target = match s.target_rate {
        Some(t) => format!(" (target {t:.0})"),
        None => match s.pace {
            Pace::Fast => " (as fast as possible)".to_string(),
            _ => String::new(),
        },
    };
    let rate_label = format!("rate {:.0} ev/s{target}", s.rate);
    let lag_label = format!(
        "lag {:.1} ms (max {:.1} ms)",
        s.lag.as_secs_f64() * 1e3,
        s.max_lag.as_secs_f64() * 1e3
    );
    let cols = Layout::horizontal([Constraint::Ratio(1, 4); 4]).split(area);
    if compact {
        // Two lines: a short label over a thin gauge.
        let credit_label = format!(
            "credit {}/{}",
            short_bytes(s.credit.in_flight_bytes),
            short_bytes(s.credit.window_bytes)
        );
        let ring_label = format!(
            "ring {}/{}",
            short_bytes(s.ring.bytes_used),
            short_bytes(s.ring.capacity)
        );
        let rate_label = format!(
            "{:.0} ev/s{}",
            s.rate,
            s.target_rate.map_or(String::new(), |t| format!("/{t:.0}"))
        );
        let lag_label = format!(
            "lag {:.1}ms max {:.0}",
            s.lag.as_secs_f64() * 1e3,
            s.max_lag.as_secs_f64() * 1e3
        );
        let items = [
            (
                credit_label,
                ratio(s.credit.in_flight_bytes, s.credit.window_bytes),
            ),
            (ring_label, ratio(s.ring.bytes_used, s.ring.capacity)),
            (rate_label, 0.0),
            (lag_label, 0.0),
        ];
        for (i, (label, r)) in items.into_iter().enumerate() {
            let [top, bottom] =
                Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(cols[i]);
            frame.render_widget(Paragraph::new(label), top);
            if i < 2 {
                frame.render_widget(
                    LineGauge::default()
                        .ratio(r)
                        .filled_style(Style::new().fg(Color::Cyan)),
                    bottom,
                );
            } else if i == 2 {
                let data: Vec<u64> = s
                    .rate_history
                    .iter()
                    .rev()
                    .take(bottom.width as usize)
                    .rev()
                    .copied()
                    .collect();
                frame.render_widget(
                    Sparkline::default()
                        .data(&data)
                        .style(Style::new().fg(Color::Green)),
                    bottom,
                );
            }
        }
        return;
    }
    let pct = s.credit.in_flight_pct();
    let credit_color = if pct >= crate::flow::BACKPRESSURE_PCT {
        Color::Red
    } else {
        Color::Cyan
    };
    frame.render_widget(
        Gauge::default()
            .block(Block::bordered().title(" credit window "))
            .gauge_style(Style::new().fg(credit_color))
            .ratio(ratio(s.credit.in_flight_bytes, s.credit.window_bytes))
            .label(credit_label),
        cols[0],
    );
    frame.render_widget(
        Gauge::default()
            .block(Block::bordered().title(" replay ring "))
            .gauge_style(Style::new().fg(Color::Blue))
            .ratio(ratio(s.ring.bytes_used, s.ring.capacity))
            .label(ring_label),
        cols[1],
    );
    let inner_w = cols[2].width.saturating_sub(2) as usize;
    let data: Vec<u64> = s
        .rate_history
        .iter()
        .rev()
        .take(inner_w)
        .rev()
        .copied()
        .collect();
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(format!(" {rate_label} ")))
            .data(&data)
            .style(Style::new().fg(Color::Green)),
        cols[2],
    );
    let lag_ratio = (s.lag.as_secs_f64() / 0.1).clamp(0.0, 1.0);
    frame.render_widget(
        Gauge::default()
            .block(Block::bordered().title(" lag behind schedule "))
            .gauge_style(Style::new().fg(if s.lag.as_millis() >= 50 {
                Color::Red
            } else {
                Color::Green
            }))
            .ratio(lag_ratio)
            .label(lag_label),
        cols[3],
    );
}

fn render_timeline(frame: &mut Frame, area: Rect, model: &Model, compact: bool) {
    let s = &model.stats;
    let Some((first, last)) = model.range() else {
        frame.render_widget(Paragraph::new("empty source"), area);
        return;
    };
    let pos = model.position().unwrap_or(first);
    let r = if last > first {
        (pos - first) as f64 / (last - first) as f64
    } else {
        1.0
    };
    let time = match (
        model
            .rows
            .back()
            .and_then(|r| r.event.commit_time_ns)
            .or(s.time_ns),
        model.source.first_time_ns,
        model.source.last_time_ns,
    ) {
        (Some(t), Some(t0), Some(t1)) => format!(
            "  {} / {}",
            hms(t.saturating_sub(t0)),
            hms(t1.saturating_sub(t0))
        ),
        _ => String::new(),
    };
    let ring = match (s.ring.oldest_offset, s.ring.newest_offset) {
        (Some(a), Some(b)) => format!("  ring #{a}..#{b}"),
        _ => String::new(),
    };
    let label = format!("#{pos} of {first}..={last}  {:.1}%{time}{ring}", r * 100.0);
    if compact {
        frame.render_widget(
            LineGauge::default()
                .ratio(r.clamp(0.0, 1.0))
                .label(label)
                .filled_style(Style::new().fg(Color::Cyan)),
            area,
        );
        return;
    }
    let [top, bottom] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    frame.render_widget(Paragraph::new(label).bold(), top);
    // The bar: played part, the ring's range, and the cursor.
    let w = bottom.width as usize;
    let col = |o: u64| -> usize {
        if last > first {
            (((o.saturating_sub(first)) as f64 / (last - first) as f64)
                * (w.saturating_sub(1)) as f64)
                .round() as usize
        } else {
            0
        }
    };
    let cursor = col(pos);
    let (ra, rb) = match (s.ring.oldest_offset, s.ring.newest_offset) {
        (Some(a), Some(b)) => (col(a), col(b)),
        _ => (usize::MAX, usize::MAX),
    };
    let spans: Vec<Span> = (0..w)
        .map(|i| {
            if i == cursor {
                Span::styled("┃", Style::new().fg(Color::White).bold())
            } else if i >= ra && i <= rb {
                Span::styled("▆", Style::new().fg(Color::Blue))
            } else if i < cursor {
                Span::styled("━", Style::new().fg(Color::Cyan))
            } else {
                Span::styled("─", Style::new().fg(Color::DarkGray))
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(Line::from(spans)), bottom);
}

fn hms(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

fn render_footer(frame: &mut Frame, area: Rect, view: &ViewState, compact: bool) {
    let hints: &[(&str, &str)] = if view.prompt.is_some() {
        &[("enter", "apply"), ("esc", "cancel")]
    } else if compact {
        &[
            ("spc", "pause"),
            (".", "step"),
            (",", "back"),
            ("g", "seek"),
            ("s", "stop"),
            ("r", "resume"),
            ("tab", "panel"),
            ("?", "keys"),
            ("q", "quit"),
        ]
    } else {
        &[
            ("space", "pause"),
            (".", "step"),
            (",", "back"),
            ("+/-", "speed"),
            ("p", "pace"),
            ("g", "seek"),
            ("[/]", "±10%"),
            ("s", "stop"),
            ("r", "resume"),
            ("f", "freeze"),
            ("/", "filter"),
            ("tab", "panel"),
            ("?", "help"),
            ("q", "quit"),
        ]
    };
    let mut spans = Vec::new();
    for (k, what) in hints {
        spans.push(Span::styled(format!(" {k} "), Style::new().reversed()));
        spans.push(Span::raw(format!(" {what} ")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn render_prompt(frame: &mut Frame, area: Rect, view: &ViewState) {
    let Some(p) = &view.prompt else { return };
    let (title, hint) = match p.kind {
        PromptKind::Seek => (
            " seek ",
            "offset (1200), @commit_ts, RFC 3339 time, NN%, +N / -N",
        ),
        PromptKind::Resume => (" resume from offset ", "the run restarts from this offset"),
        PromptKind::Filter => (" filter the table ", "key prefix or txn_id; empty clears"),
    };
    let r = centered(area, 64, 5);
    frame.render_widget(Clear, r);
    let status = match &p.error {
        Some(e) => Line::styled(e.clone(), Style::new().fg(Color::Red)),
        None => Line::styled(
            if p.kind == PromptKind::Filter {
                "enter to apply".to_string()
            } else {
                "ok: enter to go".to_string()
            },
            Style::new().fg(Color::Green),
        ),
    };
    let text = vec![
        Line::from(vec![
            Span::raw("> "),
            Span::styled(p.input.clone(), Style::new().bold()),
            Span::styled("▏", Style::new().fg(Color::Cyan)),
        ]),
        status,
        Line::styled(hint, Style::new().fg(Color::DarkGray)),
    ];
    frame.render_widget(
        Paragraph::new(text).block(
            Block::bordered()
                .title(title)
                .border_style(Style::new().fg(Color::Cyan)),
        ),
        r,
    );
}

fn render_help(frame: &mut Frame, area: Rect) {
    let r = centered(area, 70, HELP.len() as u16 + 4);
    frame.render_widget(Clear, r);
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>24}  "), Style::new().bold().fg(Color::Cyan)),
                Span::raw(*what),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" keys (esc or ? to close) ")),
        r,
    );
}

fn render_report(frame: &mut Frame, area: Rect, model: &Model, r: &crate::player::Report) {
    let h = 13;
    let rect = centered(area, 72, h);
    frame.render_widget(Clear, rect);
    let title = format!(" run {} ", r.outcome);
    let mut lines = vec![
        Line::from(format!(
            "events {}  bytes {}  failures {}  in {:.1} s ({:.0} ev/s)",
            r.events_sent,
            human_bytes(r.bytes),
            r.failures,
            r.duration_ms as f64 / 1e3,
            r.achieved_rate
        )),
        Line::from(format!(
            "offsets {}..={}",
            r.first_offset.map_or("-".into(), |o| o.to_string()),
            r.last_offset.map_or("-".into(), |o| o.to_string())
        )),
        Line::from(format!(
            "lag max {:.2} ms, p99 {:.2} ms",
            r.max_lag_ms, r.p99_lag_ms
        )),
        Line::from(format!(
            "hash through last event: {}",
            r.final_hash.as_deref().unwrap_or("-")
        )),
    ];
    if let Some(sh) = &r.state_hash {
        lines.push(Line::from(format!("state hash: {sh}")));
    }
    if let Some(reason) = &r.reason {
        lines.push(Line::styled(
            format!("reason: {reason}"),
            Style::new().fg(Color::Yellow),
        ));
    }
    lines.push(Line::raw(""));
    lines.push(match r.next_offset {
        Some(n) => Line::styled(
            format!("resume from offset {n}: press r (prefilled), or `play --from {n}`"),
            Style::new().bold().fg(Color::Green),
        ),
        None => Line::styled("played to the end of the source", Style::new().bold()),
    });
    lines.push(Line::styled(
        "esc closes this; the table stays browsable",
        Style::new().fg(Color::DarkGray),
    ));
    let _ = model;
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }).block(
            Block::bordered()
                .title(title)
                .border_style(Style::new().fg(Color::Yellow)),
        ),
        rect,
    );
}

fn render_banner(frame: &mut Frame, area: Rect, err: &str) {
    let r = Rect {
        x: area.x + 1,
        y: area.y + area.height.saturating_sub(4),
        width: area.width.saturating_sub(2),
        height: 3.min(area.height),
    };
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(Line::styled(
            err.to_string(),
            Style::new().fg(Color::White).bold(),
        ))
        .wrap(Wrap { trim: true })
        .block(
            Block::bordered()
                .title(" error (esc to dismiss) ")
                .border_style(Style::new().fg(Color::Red)),
        )
        .style(Style::new().bg(Color::Red)),
        r,
    );
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

    #[test]
    fn main_screen() {
        let t = draw(&played_model(), &ViewState::default(), 160, 45);
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
}
