//! Markers on screen: the list (`'`), the banner of the one the player paused at, and the
//! present layout's caption box.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::fit_line;
use crate::event::marker::Marker;
use crate::text::thousands;
use crate::tui::app::Model;
use crate::tui::theme;

/// A marker's caption, or its name when it has none.
fn caption(m: &Marker) -> &str {
    m.caption.as_deref().unwrap_or(&m.name)
}

pub fn render_marker_list(frame: &mut Frame, area: Rect, model: &Model, selected: usize) {
    let r = super::overlay(frame, area);
    let inner_w = r.width.saturating_sub(2);
    let inner_h = r.height.saturating_sub(2) as usize;
    let n = model.marker_offsets.len();
    let first = selected.saturating_sub(inner_h.saturating_sub(1));
    let name_w = model
        .marker_offsets
        .iter()
        .map(|(_, m)| m.name.chars().count())
        .max()
        .unwrap_or(0)
        .min(24);
    let lines: Vec<Line> = model
        .marker_offsets
        .iter()
        .enumerate()
        .skip(first)
        .take(inner_h)
        .map(|(i, (o, m))| {
            let line = Line::from(vec![
                Span::styled(format!("#{:<10}", thousands(*o)), theme::BOLD),
                Span::styled(
                    format!("{:<name_w$}  ", crate::text::ellipsize(&m.name, name_w)),
                    theme::MARKER,
                ),
                Span::raw(m.caption.clone().unwrap_or_default()),
            ]);
            let line = if i == selected {
                line.style(theme::ROW_SELECTED)
            } else {
                line
            };
            fit_line(line, inner_w)
        })
        .collect();
    let title = format!(
        " markers ({n}) · ↑↓ move, enter: go there, esc: close · M adds one, {{ }} previous / next "
    );
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(crate::text::ellipsize(&title, inner_w as usize))),
        r,
    );
}

/// The caption of the marker the player paused at, over the top of the body.
pub fn render_marker_banner(frame: &mut Frame, area: Rect, m: &Marker) {
    let r = Rect {
        x: area.x + 2,
        y: area.y + 1,
        width: area.width.saturating_sub(4),
        height: 4.min(area.height),
    };
    frame.render_widget(Clear, r);
    let title = format!(" {} · space: go on ", m.name);
    frame.render_widget(
        Paragraph::new(Line::styled(caption(m).to_string(), theme::BOLD))
            .wrap(Wrap { trim: true })
            .block(
                Block::bordered()
                    .title(crate::text::ellipsize(
                        &title,
                        r.width.saturating_sub(2) as usize,
                    ))
                    .border_style(theme::MARKER),
            ),
        r,
    );
}

/// The present layout's caption: the marker at or before the cursor.
pub fn render_caption_box(frame: &mut Frame, area: Rect, model: &Model) {
    if area.height == 0 {
        return;
    }
    let w = area.width.saturating_sub(2);
    let (title, text) = match model.marker_here() {
        Some((_, m)) => (
            format!(" {} ", m.name),
            Line::styled(caption(m).to_string(), theme::BOLD),
        ),
        None => (
            " caption ".to_string(),
            Line::styled(
                "markers show their captions here (M adds one)".to_string(),
                theme::HINT,
            ),
        ),
    };
    // Two lines of caption; a longer one ends in `…`.
    let room = (w as usize * 2).saturating_sub(1);
    let text = if text.width() > room {
        Line::styled(crate::text::ellipsize(&text.to_string(), room), text.style)
    } else {
        text
    };
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: true }).block(
            Block::bordered()
                .title(crate::text::ellipsize(&title, w as usize))
                .border_style(theme::MARKER),
        ),
        area,
    );
}
