//! The event table: offset, commit time, agent, txn_id, operations and keys; following the
//! newest event until a row is selected.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::widgets::{Cell, Row as TableRow, Table, TableState};

use super::focused_block;
use crate::event::format_time_ns;
use crate::tui::app::{Focus, Model, ViewState};
use crate::tui::theme;

fn short_txn(t: &str) -> &str {
    t.get(..13).unwrap_or(t)
}

fn keys_text(e: &crate::event::Event) -> String {
    let mut s = String::new();
    for (i, op) in e.operations.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        if op.value.is_none() {
            s.push('-');
        }
        s.push_str(&op.key);
    }
    s
}

fn event_time(e: &crate::event::Event) -> String {
    match e.commit_time_ns {
        Some(ns) => {
            let t = format_time_ns(ns);
            t.get(11..23).unwrap_or(&t).to_string()
        }
        None => format!("@{}", e.commit_ts),
    }
}

pub fn render_table(frame: &mut Frame, area: Rect, model: &Model, view: &ViewState) {
    let rows: Vec<&crate::tui::app::Row> = model.visible_rows(view).collect();
    let selected_idx = match view.selected {
        Some(o) => rows.iter().position(|r| r.event.offset == o),
        None => rows.len().checked_sub(1),
    };
    // Only the rows that fit are built.
    let height = area.height.saturating_sub(3) as usize;
    let end = match selected_idx {
        Some(i) if view.selected.is_some() => (i + height / 2 + 1)
            .min(rows.len())
            .max(height.min(rows.len())),
        _ => rows.len(),
    };
    let start = end.saturating_sub(height);
    let table_rows: Vec<TableRow> = rows[start..end]
        .iter()
        .map(|r| {
            let e = &r.event;
            TableRow::new(vec![
                Cell::from(format!("{}", e.offset)),
                Cell::from(event_time(e)),
                Cell::from(format!("{}/{}", e.namespace, e.agent_id)),
                Cell::from(short_txn(&e.txn_id).to_string()),
                Cell::from(format!("{}", e.operations.len())),
                Cell::from(keys_text(e)),
            ])
        })
        .collect();
    let mode = match (view.frozen_at, view.selected) {
        (Some(at), _) => format!(", frozen at #{}", crate::text::thousands(at)),
        (None, None) => ", following".to_string(),
        (None, Some(_)) => String::new(),
    };
    let title = format!(" events ({} shown{mode}) ", rows.len());
    let table = Table::new(
        table_rows,
        [
            Constraint::Length(7),
            Constraint::Length(12),
            Constraint::Length(24),
            Constraint::Length(13),
            Constraint::Length(3),
            Constraint::Min(10),
        ],
    )
    .header(
        TableRow::new(vec![
            "offset",
            "commit time",
            "agent",
            "txn_id",
            "ops",
            "keys",
        ])
        .style(theme::TABLE_HEADER),
    )
    .row_highlight_style(theme::ROW_SELECTED)
    .block(focused_block(&title, view.focus == Focus::Table));
    let mut state = TableState::default();
    state.select(selected_idx.map(|i| i.saturating_sub(start)));
    frame.render_stateful_widget(table, area, &mut state);
}
