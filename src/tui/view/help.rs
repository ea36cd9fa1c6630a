//! The help overlay: every key and what it does.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::centered;
use crate::tui::input::HELP;
use crate::tui::theme;

pub fn render_help(frame: &mut Frame, area: Rect) {
    let r = centered(area, 70, HELP.len() as u16 + 4);
    frame.render_widget(Clear, r);
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>24}  "), theme::HELP_KEY),
                Span::raw(*what),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" keys (esc or ? to close) ")),
        r,
    );
}
