//! The key history overlay: every version of one key (offset, time, agent, write or delete,
//! version, how many fields changed), the selected one's changes field by field under it.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::fit_line;
use crate::inspect::history::VersionOp;
use crate::text::{count, thousands};
use crate::tui::app::KeyHistory;
use crate::tui::theme;

pub fn render_history(frame: &mut Frame, area: Rect, h: &KeyHistory, selected: usize) {
    let r = super::overlay(frame, area);
    let inner_w = r.width.saturating_sub(2);
    let inner_h = r.height.saturating_sub(2) as usize;
    let n = h.versions.len();
    let status = match (&h.error, h.done) {
        (Some(e), _) => format!("stopped: {e}"),
        (None, true) if n == 0 => {
            "no transaction touches this key (keys are matched exactly)".into()
        }
        (None, true) => count(n as u64, "version", "versions"),
        (None, false) => format!(
            "{} so far, scanning the source…",
            count(n as u64, "version", "versions")
        ),
    };
    let title = format!(
        " history of {} · {status} · ↑↓ move, enter: go there, esc: close ",
        h.key
    );
    // The list takes the upper part, the selected version's changes the rest.
    let list_h = (inner_h / 2).max(3).min(n.max(1));
    let first = selected.saturating_sub(list_h.saturating_sub(1));
    let mut lines: Vec<Line> = Vec::with_capacity(inner_h);
    for (i, v) in h.versions.iter().enumerate().skip(first).take(list_h) {
        let when = v
            .time
            .as_deref()
            .map_or_else(|| format!("@{}", v.commit_ts), |t| t.to_string());
        let (op, op_style) = match v.op {
            VersionOp::Write => ("write", theme::SET),
            VersionOp::Delete => ("delete", theme::DELETE),
        };
        let changed = count(v.changes.len() as u64, "change", "changes");
        let line = Line::from(vec![
            Span::styled(format!("#{:<9}", thousands(v.offset)), theme::BOLD),
            Span::raw(format!("{when}  {}  ", v.agent)),
            Span::styled(op, op_style),
            Span::raw(format!(" v{}  {changed}", v.version)),
        ]);
        let line = if i == selected {
            line.style(theme::ROW_SELECTED)
        } else {
            line
        };
        lines.push(fit_line(line, inner_w));
    }
    if let Some(v) = h.versions.get(selected) {
        lines.push(Line::styled(
            format!(
                "#{} txn {} — what it changed:",
                thousands(v.offset),
                v.txn_id
            ),
            theme::HINT,
        ));
        if v.changes.is_empty() {
            lines.push(Line::raw("  (the same value again)"));
        }
        let value_w = (inner_w as usize).saturating_sub(20).max(10) / 2;
        for c in &v.changes {
            if lines.len() >= inner_h {
                break;
            }
            let text = c.line(value_w);
            let style = match text.chars().next() {
                Some('+') => theme::SET,
                Some('-') => theme::DELETE,
                _ => theme::NOTICE,
            };
            lines.push(fit_line(Line::styled(format!("  {text}"), style), inner_w));
        }
    }
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::bordered().title(crate::text::ellipsize(&title, inner_w as usize))),
        r,
    );
}
