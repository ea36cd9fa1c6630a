//! The full-value view: a whole transaction or state, pretty-printed, scrollable, with the line
//! found by `/` marked.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph};

use super::fit_line;

use crate::text::thousands;
use crate::tui::app::ValueView;
use crate::tui::theme;

pub fn render_value(frame: &mut Frame, area: Rect, v: &ValueView) {
    let r = super::overlay(frame, area);
    let inner_w = r.width.saturating_sub(2);
    let inner_h = r.height.saturating_sub(2) as usize;
    let n = v.lines.len();
    // Long lines wrap (a full value is read whole): continuation rows keep the line's indent.
    let width = (inner_w as usize).saturating_sub(2).max(8);
    let mut lines: Vec<Line> = Vec::with_capacity(inner_h);
    let mut last = v.scroll;
    'fill: for (i, l) in v.lines.iter().enumerate().skip(v.scroll) {
        let indent = l.chars().take_while(|c| *c == ' ').count().min(width / 2);
        let chars: Vec<char> = l.chars().collect();
        let mut start = 0;
        let mut first = true;
        while first || start < chars.len() {
            if lines.len() == inner_h {
                break 'fill;
            }
            let room = if first { width } else { width - indent };
            let end = (start + room).min(chars.len());
            let piece: String = chars[start..end].iter().collect();
            let text = if first {
                piece
            } else {
                format!("{}{piece}", " ".repeat(indent))
            };
            // Marked by a glyph as well as a colour (readable with NO_COLOR).
            let line = if v.found_line == Some(i) && first {
                Line::raw(format!("▸ {text}")).style(theme::ROW_SELECTED)
            } else {
                Line::raw(format!("  {text}"))
            };
            lines.push(line);
            start = end;
            first = false;
        }
        last = i + 1;
    }
    let title = format!(
        " {} · lines {}-{} of {} · ↑↓ PgUp PgDn scroll, / find, n N next, y copy, esc close ",
        v.title,
        thousands((v.scroll + 1).min(n) as u64),
        thousands(last.max(v.scroll + 1).min(n) as u64),
        thousands(n as u64)
    );
    let block = Block::bordered()
        .title(fit_line(Line::raw(title), r.width.saturating_sub(2)))
        .border_style(theme::BORDER_FOCUSED);
    frame.render_widget(Paragraph::new(lines).block(block), r);
}
