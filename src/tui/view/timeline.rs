//! The timeline: position in the range (and in wall time), the ring's range and the cursor.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::tui::app::Model;
use crate::tui::theme;

pub fn render_timeline(frame: &mut Frame, area: Rect, model: &Model, compact: bool) {
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
        (Some(t), Some(t0), Some(t1)) => {
            // A session shorter than a minute shows its positions to the millisecond.
            let short = t1.saturating_sub(t0) < 60_000_000_000;
            let show = |ns: u64| if short { ms_clock(ns) } else { hms(ns) };
            format!(
                "  {} / {}",
                show(t.saturating_sub(t0)),
                show(t1.saturating_sub(t0))
            )
        }
        _ => String::new(),
    };
    let ring = match (s.ring.oldest_offset, s.ring.newest_offset) {
        (Some(a), Some(b)) => format!("  ring {}", crate::text::range_screen(a, b)),
        _ => String::new(),
    };
    let label = format!(
        "#{} of {}  {:.1}%{time}{ring}",
        crate::text::thousands(pos),
        crate::text::range_screen(first, last),
        r * 100.0
    );
    if compact {
        // One line: the label, then a bar whose glyphs show the position without colour.
        let w = area.width as usize;
        let label = crate::text::ellipsize(&label, w.saturating_sub(11).max(w * 2 / 3));
        let rest = w.saturating_sub(label.chars().count() + 1);
        let at = (r.clamp(0.0, 1.0) * rest.saturating_sub(1) as f64).round() as usize;
        let bar: String = (0..rest)
            .map(|i| match i.cmp(&at) {
                std::cmp::Ordering::Less => '━',
                std::cmp::Ordering::Equal => '┃',
                std::cmp::Ordering::Greater => '─',
            })
            .collect();
        let line = Line::from(vec![
            Span::raw(format!("{label} ")),
            Span::styled(bar, theme::TIMELINE_PLAYED),
        ]);
        frame.render_widget(Paragraph::new(line), area);
        return;
    }
    let [top, bottom] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    frame.render_widget(
        Paragraph::new(super::fit_line(Line::from(label), top.width)).style(theme::BOLD),
        top,
    );
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
                Span::styled("┃", theme::TIMELINE_CURSOR)
            } else if i >= ra && i <= rb {
                Span::styled("▆", theme::TIMELINE_RING)
            } else if i < cursor {
                Span::styled("━", theme::TIMELINE_PLAYED)
            } else {
                Span::styled("─", theme::TIMELINE_AHEAD)
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(Line::from(spans)), bottom);
}

/// `07.768s`: seconds and milliseconds, for a short session.
fn ms_clock(ns: u64) -> String {
    format!("{:02}.{:03}s", ns / 1_000_000_000, (ns / 1_000_000) % 1000)
}

fn hms(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}
