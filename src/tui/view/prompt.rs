//! The prompt overlay (seek, resume from, filter), validated as it is typed.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::centered;
use crate::tui::app::{PromptKind, ViewState};
use crate::tui::theme;

pub fn render_prompt(frame: &mut Frame, area: Rect, view: &ViewState) {
    let Some(p) = &view.prompt else { return };
    let (title, hint) = match p.kind {
        PromptKind::Seek => (
            " seek ",
            "offset 1200 · @commit_ts · 09:10:00 or RFC 3339 · 50% · +N/-N · /error · ↑ history",
        ),
        PromptKind::Resume => (" resume from offset ", "the run restarts from this offset"),
        PromptKind::Filter => (
            " search ",
            "a key, a value, an agent or a txn_id prefix; re:REGEX; empty clears; ↑ history",
        ),
        PromptKind::Find => (
            " find in this value ",
            "text to find (case-sensitive); n / N: next / previous line holding it",
        ),
        PromptKind::Marker => (
            " marker here ",
            "NAME then a caption: intro The agent reads the question · saved beside the source",
        ),
        PromptKind::History => (
            " history of the key ",
            "the key exactly as stored; every version in the source is listed · ↑ history",
        ),
    };
    // Room for an error of two lines (it wraps at words inside the box).
    let r = centered(area, 72, 6);
    frame.render_widget(Clear, r);
    let status = match &p.error {
        Some(e) => Line::styled(e.clone(), theme::INVALID),
        None => Line::styled(
            if p.kind == PromptKind::Filter {
                "the table shows what matches · enter: search the whole source (n / N)".to_string()
            } else {
                "ok: enter to go".to_string()
            },
            theme::VALID,
        ),
    };
    let split = p
        .input
        .char_indices()
        .nth(p.cursor)
        .map_or(p.input.len(), |(i, _)| i);
    let (before, after) = (p.input[..split].to_string(), p.input[split..].to_string());
    let text = vec![
        Line::from(vec![
            Span::raw("> "),
            Span::styled(before, theme::BOLD),
            Span::styled("▏", theme::CARET),
            Span::styled(after, theme::BOLD),
        ]),
        status,
        Line::styled(hint, theme::HINT),
    ];
    frame.render_widget(
        Paragraph::new(text)
            .wrap(ratatui::widgets::Wrap { trim: false })
            .block(
                Block::bordered()
                    .title(title)
                    .border_style(theme::PROMPT_BORDER),
            ),
        r,
    );
}
