//! The state pane: the materialized keys at the cursor, with the selected transaction's changes
//! on top (and how far behind the cursor the fold is, when it is).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::Paragraph;

use super::focused_block;
use crate::state::Change;
use crate::tui::app::{Focus, Model, ViewState};
use crate::tui::theme;

pub fn render_state(frame: &mut Frame, area: Rect, model: &Model, view: &ViewState) {
    let Some(state) = &model.state else {
        frame.render_widget(
            Paragraph::new("state not tracked")
                .block(focused_block(" state ", view.focus == Focus::State)),
            area,
        );
        return;
    };
    let behind = model.state_behind();
    let title = if behind > 0 && model.fold_paused {
        format!(
            " state at #{}: {} ({behind} behind, waits out full speed) ",
            model
                .state_through
                .map_or("start".into(), |p| p.to_string()),
            crate::text::count(state.len() as u64, "key", "keys")
        )
    } else if behind > 0 {
        format!(
            " state at #{}: {} (folding: {behind} behind the cursor) ",
            model
                .state_through
                .map_or("start".into(), |p| p.to_string()),
            crate::text::count(state.len() as u64, "key", "keys")
        )
    } else {
        format!(
            " state at #{}: {} ",
            model.position().map_or("-".into(), |p| p.to_string()),
            crate::text::count(state.len() as u64, "key", "keys")
        )
    };
    let block = focused_block(&title, view.focus == Focus::State);
    let diff = model.selected_diff(view);
    let mut lines: Vec<Line> = Vec::new();
    if let Some(d) = &diff {
        lines.push(Line::styled(
            // The selected row's own changes: the state above stays at the cursor.
            match model.position() {
                Some(p) if p != d.offset => {
                    format!(
                        "changes of the selected #{} (the state is at #{p}):",
                        d.offset
                    )
                }
                _ => format!("changes of #{}:", d.offset),
            },
            theme::BOLD,
        ));
        for c in &d.changes {
            let (sign, key, text) = match c {
                Change::Added { key, value } => ("+", key, value.to_json_string(&key.key)),
                Change::Changed { key, new, .. } => ("~", key, new.to_json_string(&key.key)),
                Change::Deleted { key, .. } => ("-", key, "(deleted)".to_string()),
                Change::DeletedMissing { key } => {
                    ("-", key, "(delete of a missing key)".to_string())
                }
            };
            // A changed value: what changed in it, field by field, under the key.
            let fields = match c {
                Change::Changed { key, old, new } => field_changes(&key.key, old, new),
                _ => None,
            };
            match fields {
                Some(fields) => {
                    lines.push(Line::styled(
                        format!("{sign} {}/{}:{}", key.namespace, key.agent_id, key.key),
                        theme::change(c),
                    ));
                    let shown = fields.len().min(FIELD_LINES);
                    for f in &fields[..shown] {
                        lines.push(Line::raw(format!("    {}", f.line(48))));
                    }
                    if fields.len() > shown {
                        lines.push(Line::styled(
                            format!("    … {} more (h: the key's history)", fields.len() - shown),
                            theme::HINT,
                        ));
                    }
                }
                None => lines.push(Line::from(vec![
                    Span::styled(
                        format!("{sign} {}/{}:{} ", key.namespace, key.agent_id, key.key),
                        theme::change(c),
                    ),
                    Span::raw(text),
                ])),
            }
        }
        lines.push(Line::raw(""));
    }
    let changed: Vec<&crate::state::StateKey> = diff
        .as_ref()
        .map(|d| d.changes.iter().map(|c| c.key()).collect())
        .unwrap_or_default();
    let budget = (area.height as usize).saturating_sub(2) + view.state_scroll as usize;
    for (k, entry) in state.iter().take(budget + 1) {
        let style = if changed.contains(&k) {
            theme::NOTICE
        } else {
            Style::new()
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{}/{}:{} ", k.namespace, k.agent_id, k.key), style),
            Span::styled(format!("v{} ", entry.version), theme::HINT),
            Span::raw(entry.value.to_json_string(&k.key)),
        ]));
    }
    // One line per key, cut with `…` at the pane's edge (the detail pane shows values whole).
    let width = area.width.saturating_sub(2);
    let lines: Vec<Line<'static>> = lines
        .into_iter()
        .map(|l| super::fit_line(l, width))
        .collect();
    frame.render_widget(
        Paragraph::new(Text::from(lines))
            .block(block)
            .scroll((view.state_scroll, 0)),
        area,
    );
}

/// Field changes shown under a changed key, at most.
const FIELD_LINES: usize = 6;

/// What changed inside a value, field by field (`None` when a value cannot be read).
fn field_changes(
    key: &str,
    old: &crate::event::ObjectValue,
    new: &crate::event::ObjectValue,
) -> Option<Vec<crate::inspect::json_diff::FieldChange>> {
    let old = serde_json::Value::Object(old.object(key).ok()?.clone());
    let new = serde_json::Value::Object(new.object(key).ok()?.clone());
    Some(crate::inspect::json_diff::diff(&old, &new))
}
