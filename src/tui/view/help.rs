//! The help overlay: every key and what it does.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::centered;
use crate::tui::input::HELP;
use crate::tui::theme;

pub fn render_help(frame: &mut Frame, area: Rect) {
    let r = centered(area, 96, HELP.len() as u16 + 4);
    frame.render_widget(Clear, r);
    // Narrow screens give the keys less room; a line that still does not fit ends in `…`.
    let key_w = if r.width >= 90 { 24 } else { 12 };
    let inner = r.width.saturating_sub(2);
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            let k = crate::text::ellipsize(k, key_w);
            super::fit_line(
                Line::from(vec![
                    Span::styled(format!("{k:>key_w$}  "), theme::HELP_KEY),
                    Span::raw(*what),
                ]),
                inner,
            )
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" keys (esc or ? to close) ")),
        r,
    );
}
