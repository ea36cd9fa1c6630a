//! The key hints line.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::tui::app::ViewState;
use crate::tui::theme;

pub fn render_footer(frame: &mut Frame, area: Rect, view: &ViewState, compact: bool) {
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
            ("/", "search"),
            ("n/N", "next"),
            ("tab", "panel"),
            ("?", "help"),
            ("q", "quit"),
        ]
    };
    let mut spans = Vec::new();
    for (k, what) in hints {
        spans.push(Span::styled(format!(" {k} "), theme::KEY));
        spans.push(Span::raw(format!(" {what} ")));
    }
    frame.render_widget(
        Paragraph::new(super::fit_line(Line::from(spans), area.width)),
        area,
    );
}
