//! The timeline: position in the range (and in wall time), the ring's range and the cursor.
//! A click on its bar seeks there ([`Bar::offset_at`]).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::tui::app::Model;
use crate::tui::theme;

/// The bar of the timeline: one line, its first column the source's first offset and its last
/// column the last. Drawing and clicks both place offsets through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    pub area: Rect,
    pub first: u64,
    pub last: u64,
}

impl Bar {
    /// The column (from the bar's left) that stands for `offset`.
    pub fn column(&self, offset: u64) -> usize {
        let w = self.area.width as usize;
        if self.last > self.first {
            ((offset.saturating_sub(self.first) as f64 / (self.last - self.first) as f64)
                * w.saturating_sub(1) as f64)
                .round() as usize
        } else {
            0
        }
    }

    /// The offset a click at screen column `x` stands for (None: not on the bar).
    pub fn offset_at(&self, x: u16, y: u16) -> Option<u64> {
        let a = self.area;
        if y != a.y || x < a.x || x >= a.x + a.width {
            return None;
        }
        let w = a.width.saturating_sub(1);
        if w == 0 || self.last <= self.first {
            return Some(self.first);
        }
        let r = f64::from(x - a.x) / f64::from(w);
        Some(self.first + (r * (self.last - self.first) as f64).round() as u64)
    }
}

/// The label and where the label and the bar go in `area`.
fn place(area: Rect, model: &Model, compact: bool) -> Option<(String, Rect, Bar)> {
    let s = &model.stats;
    let (first, last) = model.range()?;
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
    if compact || area.height < 2 {
        // One line: the label, then the bar.
        let w = area.width as usize;
        let label = crate::text::ellipsize(&label, w.saturating_sub(11).max(w * 2 / 3));
        let used = (label.chars().count() as u16 + 1).min(area.width);
        let bar = Rect {
            x: area.x + used,
            width: area.width - used,
            height: 1.min(area.height),
            ..area
        };
        let label_area = Rect {
            width: used,
            height: 1.min(area.height),
            ..area
        };
        return Some((
            label,
            label_area,
            Bar {
                area: bar,
                first,
                last,
            },
        ));
    }
    let [top, bottom] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    Some((
        label,
        top,
        Bar {
            area: bottom,
            first,
            last,
        },
    ))
}

/// The timeline's bar in `area` (for placing a click).
pub fn bar(area: Rect, model: &Model, compact: bool) -> Option<Bar> {
    place(area, model, compact).map(|(_, _, b)| b)
}

pub fn render_timeline(frame: &mut Frame, area: Rect, model: &Model, compact: bool) {
    let s = &model.stats;
    let Some((label, label_area, bar)) = place(area, model, compact) else {
        frame.render_widget(Paragraph::new("empty source"), area);
        return;
    };
    let one_line = label_area.y == bar.area.y;
    if one_line {
        frame.render_widget(Paragraph::new(Span::raw(label)), label_area);
    } else {
        frame.render_widget(
            Paragraph::new(super::fit_line(Line::from(label), label_area.width)).style(theme::BOLD),
            label_area,
        );
    }
    // The bar: played part, the ring's range (not on one line: there the glyphs alone show
    // the position), markers (`◆`, their names in the list), an A-B loop's ends and the cursor.
    let cursor = bar.column(model.position().unwrap_or(bar.first));
    let marks: Vec<usize> = model
        .marker_offsets
        .iter()
        .map(|(o, _)| bar.column(*o))
        .collect();
    let loop_ends = s.ab_loop.map(|(a, b)| (bar.column(a), bar.column(b)));
    let ring = match (s.ring.oldest_offset, s.ring.newest_offset) {
        (Some(a), Some(b)) if !one_line => Some((bar.column(a), bar.column(b))),
        _ => None,
    };
    let spans: Vec<Span> = (0..bar.area.width as usize)
        .map(|i| {
            if i == cursor {
                Span::styled("┃", theme::TIMELINE_CURSOR)
            } else if marks.contains(&i) {
                Span::styled("◆", theme::MARKER)
            } else if loop_ends.is_some_and(|(a, b)| i == a || i == b) {
                Span::styled("╫", theme::MARKER)
            } else if ring.is_some_and(|(a, b)| i >= a && i <= b) {
                Span::styled("▆", theme::TIMELINE_RING)
            } else if i < cursor {
                Span::styled("━", theme::TIMELINE_PLAYED)
            } else {
                Span::styled("─", theme::TIMELINE_AHEAD)
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(Line::from(spans)), bar.area);
}

/// `07.768s`: seconds and milliseconds, for a short session.
fn ms_clock(ns: u64) -> String {
    format!("{:02}.{:03}s", ns / 1_000_000_000, (ns / 1_000_000) % 1000)
}

fn hms(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}
