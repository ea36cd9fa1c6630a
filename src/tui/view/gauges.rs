//! The transport gauges: credit window (in flight / window), replay ring, rate with its
//! sparkline and target, lag behind schedule. Compact: a label over a thin gauge each.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::{Block, Paragraph, Sparkline};

use crate::player::{Pace, Stats};
use crate::tui::app::Model;
use crate::tui::theme;

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

pub fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        (a as f64 / b as f64).clamp(0.0, 1.0)
    }
}

pub fn render_gauges(frame: &mut Frame, area: Rect, model: &Model, compact: bool) {
    let cols = Layout::horizontal([Constraint::Ratio(1, 4); 4]).split(area);
    if compact {
        render_compact(frame, &cols, &model.stats);
    } else {
        render_full(frame, &cols, &model.stats);
    }
}

/// The gauges folded into one line (the inspect layout):
/// `credit 12K/4.0M · ring 3.0M/64M · 12345 ev/s/15000 · lag 0.3 ms, max 2 ms`.
pub fn render_status_line(frame: &mut Frame, area: Rect, model: &Model) {
    let s = &model.stats;
    let [credit, ring, rate, lag] = short_labels(s);
    let mut text = format!("{credit} · {ring} · {rate} · {lag}");
    if s.passes > 0 {
        text.push_str(&format!(" · pass {}", s.passes + 1));
    }
    if let Some((a, b)) = s.ab_loop {
        text.push_str(&format!(" · loop {}", crate::text::range_screen(a, b)));
    }
    frame.render_widget(
        Paragraph::new(super::fit_line(
            ratatui::text::Line::styled(text, theme::HINT),
            area.width,
        )),
        area,
    );
}

/// The four gauges' labels in short form.
fn short_labels(s: &Stats) -> [String; 4] {
    [
        format!(
            "credit {}/{}",
            short_bytes(s.credit.in_flight_bytes),
            short_bytes(s.credit.window_bytes)
        ),
        format!(
            "ring {}/{}",
            short_bytes(s.ring.bytes_used),
            short_bytes(s.ring.capacity)
        ),
        format!(
            "{:.0} ev/s{}",
            s.rate,
            s.target_rate.map_or(String::new(), |t| format!("/{t:.0}"))
        ),
        format!(
            "lag {:.1} ms, max {:.0} ms",
            s.lag.as_secs_f64() * 1e3,
            s.max_lag.as_secs_f64() * 1e3
        ),
    ]
}

/// Two lines per gauge: a short label over a thin gauge.
fn render_compact(frame: &mut Frame, cols: &[Rect], s: &Stats) {
    let [credit_label, ring_label, rate_label, lag_label] = short_labels(s);
    let items = [
        (
            credit_label,
            Some(ratio(s.credit.in_flight_bytes, s.credit.window_bytes)),
        ),
        (ring_label, Some(ratio(s.ring.bytes_used, s.ring.capacity))),
        (rate_label, None),
        (lag_label, None),
    ];
    for (i, (label, r)) in items.into_iter().enumerate() {
        let [top, bottom] =
            Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(cols[i]);
        // One column of space between neighbours' labels: they never run into each other.
        let w = top.width.saturating_sub(1) as usize;
        frame.render_widget(Paragraph::new(crate::text::ellipsize(&label, w)), top);
        if let Some(r) = r {
            frame.render_widget(
                Paragraph::new(percent_bar(r, w)).style(theme::CREDIT),
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
            frame.render_widget(Sparkline::default().data(&data).style(theme::RATE), bottom);
        }
    }
}

/// `15% ███░░░░░░`: the fill shown by glyphs, so it reads without colour.
fn percent_bar(r: f64, width: usize) -> String {
    let pct = format!("{:>3.0}% ", r * 100.0);
    let rest = width.saturating_sub(pct.chars().count());
    format!("{pct}{}", crate::text::bar(r, rest))
}

/// A bordered gauge: the label, then a bar of glyphs in the rest of the line.
fn gauge_box(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    label: &str,
    r: f64,
    style: ratatui::style::Style,
) {
    let block = Block::bordered().title(format!(" {title} "));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let w = inner.width as usize;
    if inner.height >= 2 {
        // The label on its line, the bar across the next.
        let lines = vec![
            ratatui::text::Line::raw(crate::text::ellipsize(label, w)),
            ratatui::text::Line::styled(crate::text::bar(r, w), style),
        ];
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    }
    let label = crate::text::ellipsize(label, w.saturating_sub(6).max(w / 2));
    let rest = w.saturating_sub(label.chars().count() + 1);
    let line = ratatui::text::Line::from(vec![
        ratatui::text::Span::raw(format!("{label} ")),
        ratatui::text::Span::styled(crate::text::bar(r, rest), style),
    ]);
    frame.render_widget(Paragraph::new(line), inner);
}

/// A bordered gauge each, with the full labels.
fn render_full(frame: &mut Frame, cols: &[Rect], s: &Stats) {
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
            (Some(a), Some(b)) => format!("  {}", crate::text::range_screen(a, b)),
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
    let pct = s.credit.in_flight_pct();
    let credit_style = if pct >= crate::flow::BACKPRESSURE_PCT {
        theme::ALERT
    } else {
        theme::CREDIT
    };
    gauge_box(
        frame,
        cols[0],
        "credit window",
        &credit_label,
        ratio(s.credit.in_flight_bytes, s.credit.window_bytes),
        credit_style,
    );
    gauge_box(
        frame,
        cols[1],
        "replay ring",
        &ring_label,
        ratio(s.ring.bytes_used, s.ring.capacity),
        theme::RING,
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
            .style(theme::RATE),
        cols[2],
    );
    let lag_ratio = (s.lag.as_secs_f64() / 0.1).clamp(0.0, 1.0);
    gauge_box(
        frame,
        cols[3],
        "lag behind schedule",
        &lag_label,
        lag_ratio,
        if s.lag.as_millis() >= 50 {
            theme::ALERT
        } else {
            theme::LAG_OK
        },
    );
}
