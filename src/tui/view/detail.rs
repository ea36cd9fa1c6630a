//! The transaction pane: the selected event's operations with their values as pretty JSON.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Paragraph, Wrap};

use super::focused_block;
use crate::event::format_time_ns;
use crate::tui::app::{Focus, Model, ViewState};
use crate::tui::theme;

pub fn render_detail(frame: &mut Frame, area: Rect, model: &Model, view: &ViewState) {
    let block = focused_block(" transaction ", view.focus == Focus::Detail);
    let Some(row) = model.selected_row(view) else {
        let text = match (&view.filter, model.rows.is_empty()) {
            (Some(f), false) => {
                format!("no event shown matches the filter \"{f}\" (/ to change it)")
            }
            _ => "no event played yet".to_string(),
        };
        frame.render_widget(
            Paragraph::new(text)
                .wrap(ratatui::widgets::Wrap { trim: true })
                .block(block),
            area,
        );
        return;
    };
    let e = &row.event;
    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!("#{} ", e.offset), theme::BOLD),
            Span::raw(format!("@{} ", e.commit_ts)),
            Span::raw(
                e.commit_time_ns
                    .map(format_time_ns)
                    .unwrap_or_else(|| "(no wall time)".into()),
            ),
        ]),
        Line::from(format!(
            "{}/{}  {} bytes",
            e.namespace, e.agent_id, row.size
        )),
        Line::from(format!("txn {}", e.txn_id)),
    ];
    if let Some(a) = &model.against {
        against_lines(a, e.offset, &mut lines);
    }
    let diff = model.selected_diff(view);
    for op in &e.operations {
        match &op.value {
            Some(v) => {
                lines.push(Line::from(vec![
                    Span::styled("set ", theme::SET),
                    Span::styled(op.key.to_string(), theme::BOLD),
                    Span::raw(format!("  v{}", op.version)),
                ]));
                // Over an earlier value: what changed in it, field by field, then the value.
                let earlier = diff.as_ref().and_then(|d| {
                    d.changes.iter().find_map(|c| match c {
                        crate::state::Change::Changed { key, old, .. }
                            if *key.key == *op.key
                                && *key.namespace == *e.namespace
                                && *key.agent_id == *e.agent_id =>
                        {
                            Some(old)
                        }
                        _ => None,
                    })
                });
                if let Some(old) = earlier
                    && let (Ok(o), Ok(n)) = (old.object(&op.key), v.object(&op.key))
                {
                    let changes = crate::inspect::json_diff::diff(
                        &serde_json::Value::Object(o.clone()),
                        &serde_json::Value::Object(n.clone()),
                    );
                    for c in &changes {
                        let style = match c {
                            crate::inspect::json_diff::FieldChange::Added { .. } => theme::SET,
                            crate::inspect::json_diff::FieldChange::Removed { .. } => theme::DELETE,
                            crate::inspect::json_diff::FieldChange::Changed { .. } => theme::NOTICE,
                        };
                        lines.push(Line::styled(format!("  {}", c.line(60)), style));
                    }
                }
                let json = match v.object(&op.key) {
                    Ok(o) => serde_json::to_string_pretty(o).unwrap_or_default(),
                    Err(err) => format!("<undecodable value: {err}>"),
                };
                for l in json.lines() {
                    lines.push(Line::from(format!("  {l}")));
                }
            }
            None => lines.push(Line::from(vec![
                Span::styled("delete ", theme::DELETE),
                Span::styled(op.key.to_string(), theme::BOLD),
                Span::raw(format!("  v{}", op.version)),
            ])),
        }
    }
    let scroll = view.detail_scroll.min(lines.len().saturating_sub(1) as u16);
    render_lines(frame, area, block, lines, scroll);
}

/// What the other source (`--against`) has at this row: agreement, or what differs.
fn against_lines(a: &crate::tui::app::Against, offset: u64, lines: &mut Vec<Line<'static>>) {
    use crate::inspect::diff::DivergenceKind;
    use crate::tui::app::Agreement;
    match a.agreement(offset) {
        Agreement::Agrees => lines.push(Line::styled(format!("= {} agrees", a.name), theme::SET)),
        Agreement::Unknown => lines.push(Line::styled(
            format!("· {}: not compared yet", a.name),
            theme::NOTICE,
        )),
        Agreement::Differs => {
            let Some(d) = a.details.get(&offset) else {
                return;
            };
            let head = match (d.kind, &d.right) {
                (DivergenceKind::OnlyLeft, _) => format!("≠ {} has no such transaction", a.name),
                (DivergenceKind::OnlyRight, Some(r)) => format!(
                    "≠ {} has a transaction before this one: #{} txn {}",
                    a.name, r.offset, r.txn_id
                ),
                (_, Some(r)) if r.offset == offset => format!("≠ {} differs:", a.name),
                (_, Some(r)) => format!("≠ {} differs (its #{}):", a.name, r.offset),
                (_, None) => format!("≠ {} differs:", a.name),
            };
            lines.push(Line::styled(head, theme::DELETE));
            for c in d.changes.iter().take(12) {
                lines.push(Line::styled(format!("  {}", c.line(60)), theme::NOTICE));
            }
            for k in d.keys.iter().take(12) {
                for l in k.text(60).lines() {
                    lines.push(Line::styled(format!("  {l}"), theme::NOTICE));
                }
            }
        }
    }
}

fn render_lines(
    frame: &mut Frame,
    area: Rect,
    block: ratatui::widgets::Block<'_>,
    lines: Vec<Line<'_>>,
    scroll: u16,
) {
    frame.render_widget(
        Paragraph::new(Text::from(lines))
            .block(block)
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0)),
        area,
    );
}
