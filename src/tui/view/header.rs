//! The header: the source, the pace, the player's state and what the source is going through.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::player::{Pace, PlayState};
use crate::tui::app::{Model, ViewState};
use crate::tui::theme;

fn pace_text(model: &Model) -> String {
    let mut s = model.stats.pace.label();
    if matches!(model.stats.pace, Pace::Realtime { .. }) {
        if model.stats.logical_time {
            s.push_str(" (logical tick: no wall-clock times)");
        } else if let Some(t) = &model.source.time_source {
            s.push_str(&format!(" (times from {t})"));
        }
    }
    s
}

pub fn render_header(frame: &mut Frame, area: Rect, model: &Model, view: &ViewState) {
    let s = &model.stats;
    let mut state = vec![Span::styled(
        format!(" {} ", s.state.label().to_uppercase()),
        theme::state(s.state).reversed(),
    )];
    if let Some(live) = s.live_summary()
        && !matches!(s.state, PlayState::Stopped | PlayState::Finished)
    {
        state.push(Span::raw(" "));
        state.push(Span::styled(" ● LIVE ", theme::LIVE.reversed()));
        state.push(Span::raw(format!(" {live}")));
    }
    if let Some(r) = &s.reason
        && matches!(s.state, PlayState::Stopped | PlayState::Finished)
    {
        state.push(Span::raw(format!(" {r}")));
    }
    if let Some(status) = &s.source_status
        && !matches!(s.state, PlayState::Stopped | PlayState::Finished)
    {
        state.push(Span::styled(format!("  {status}"), theme::NOTICE));
    }
    if view.frozen_at.is_some() {
        state.push(Span::styled(
            format!("  FROZEN (+{} pending)", model.pending(view)),
            theme::FROZEN,
        ));
    }
    if let Some(n) = &view.notice {
        state.push(Span::styled(format!("  {n}"), theme::NOTICE));
    }
    match (&model.search, &view.filter) {
        (Some(search), _) => {
            state.push(Span::styled(
                format!("  {}", search.status()),
                theme::FILTER,
            ));
        }
        (None, Some(f)) => state.push(Span::styled(format!("  filter: {f}"), theme::FILTER)),
        _ => {}
    }
    if let Some(a) = &model.against {
        state.push(Span::styled(format!("  {}", a.status()), theme::FILTER));
    }
    let line1 = Line::from(vec![
        Span::styled("replayscope ", theme::BOLD),
        Span::raw(format!("{} ({})", model.source.name, model.source.kind)),
        Span::raw("  pace: "),
        Span::styled(pace_text(model), theme::BOLD),
    ]);
    let lines = vec![
        super::fit_line(line1, area.width),
        super::fit_line(Line::from(state), area.width),
    ];
    frame.render_widget(Paragraph::new(lines), area);
}
