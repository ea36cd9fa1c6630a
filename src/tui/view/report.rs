//! Overlays about how things ended: the run report (with where to resume) and the error banner.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::centered;
use super::gauges::human_bytes;
use crate::tui::app::Model;
use crate::tui::theme;

pub fn render_report(frame: &mut Frame, area: Rect, model: &Model, r: &crate::player::Report) {
    let h = 13;
    let rect = centered(area, 72, h);
    frame.render_widget(Clear, rect);
    let title = format!(" run {} ", r.outcome);
    let mut lines = vec![
        Line::from(format!(
            "played {} in this run{}  bytes {}  failures {}  in {:.1} s ({:.0} ev/s)",
            crate::text::count(r.events_sent, "event", "events"),
            if r.events_replayed > 0 {
                format!(" ({} of them after seeking back)", r.events_replayed)
            } else {
                String::new()
            },
            human_bytes(r.bytes),
            r.failures,
            r.duration_ms as f64 / 1e3,
            r.achieved_rate
        )),
        Line::from(match (r.first_offset, r.last_offset) {
            (Some(a), Some(b)) if r.events_replayed == 0 => {
                format!("offsets {}", crate::text::range_words(a, b))
            }
            (Some(a), Some(b)) => format!("first played offset {a}, last {b}"),
            _ => "nothing played".to_string(),
        }),
        Line::from(format!(
            "lag max {:.2} ms, p99 {:.2} ms",
            r.max_lag_ms, r.p99_lag_ms
        )),
        Line::from(format!(
            "hash through last event: {}",
            r.final_hash.as_deref().unwrap_or("-")
        )),
    ];
    if let Some(sh) = &r.state_hash {
        lines.push(Line::from(format!("state hash: {sh}")));
    }
    if let Some(reason) = &r.reason {
        lines.push(Line::styled(format!("reason: {reason}"), theme::REASON));
    }
    lines.push(Line::raw(""));
    lines.push(match r.next_offset {
        Some(n) => Line::styled(
            format!("resume from offset {n}: press r (prefilled), or `play --from {n}`"),
            theme::RESUME,
        ),
        None => Line::styled("played to the end of the source", theme::BOLD),
    });
    lines.push(Line::styled(
        "esc closes this; the table stays browsable",
        theme::HINT,
    ));
    let _ = model;
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }).block(
            Block::bordered()
                .title(title)
                .border_style(theme::REPORT_BORDER),
        ),
        rect,
    );
}

pub fn render_banner(frame: &mut Frame, area: Rect, err: &str) {
    let r = Rect {
        x: area.x + 1,
        y: area.y + area.height.saturating_sub(4),
        width: area.width.saturating_sub(2),
        height: 3.min(area.height),
    };
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(Line::styled(err.to_string(), theme::BANNER_TEXT))
            .wrap(Wrap { trim: true })
            .block(
                Block::bordered()
                    .title(" error (esc to dismiss) ")
                    .border_style(theme::BANNER_BORDER),
            )
            .style(theme::BANNER),
        r,
    );
}
