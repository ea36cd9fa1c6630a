//! The full-value view: a whole transaction or state, pretty-printed, scrollable, with the line
//! found by `/` marked.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Clear, Paragraph};

use super::{centered, fit_line};
use crate::text::thousands;
use crate::tui::app::ValueView;
use crate::tui::theme;

pub fn render_value(frame: &mut Frame, area: Rect, v: &ValueView) {
    let r = centered(
        area,
        area.width.saturating_sub(4).max(40),
        area.height.saturating_sub(2).max(8),
    );
    frame.render_widget(Clear, r);
    let inner_w = r.width.saturating_sub(2);
    let inner_h = r.height.saturating_sub(2) as usize;
    let n = v.lines.len();
    let last = (v.scroll + inner_h).min(n);
    let title = format!(
        " {} · lines {}-{} of {} · ↑↓ PgUp PgDn scroll, / find, n N next, y copy, esc close ",
        v.title,
        thousands((v.scroll + 1).min(n) as u64),
        thousands(last as u64),
        thousands(n as u64)
    );
    let lines: Vec<Line> = v
        .lines
        .iter()
        .enumerate()
        .skip(v.scroll)
        .take(inner_h)
        .map(|(i, l)| {
            // Marked by a glyph as well as a colour (readable with NO_COLOR).
            let line = if v.found_line == Some(i) {
                Line::raw(format!("▸ {l}")).style(theme::ROW_SELECTED)
            } else {
                Line::raw(format!("  {l}"))
            };
            fit_line(line, inner_w)
        })
        .collect();
    let block = Block::bordered()
        .title(fit_line(Line::raw(title), r.width.saturating_sub(2)))
        .border_style(theme::BORDER_FOCUSED);
    frame.render_widget(Paragraph::new(lines).block(block), r);
}
