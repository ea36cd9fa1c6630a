//! The event table: offset, commit time, agent, txn_id, operations and keys; following the
//! newest event until a row is selected.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::{Cell, Row as TableRow, Table, TableState};

use super::focused_block;
use crate::event::format_time_ns;
use crate::tui::app::{Focus, Model, ViewState};
use crate::tui::theme;

fn short_txn(t: &str) -> &str {
    t.get(..13).unwrap_or(t)
}

/// The keys an event touches (`-` before a deleted one) in `width` characters. A key too long
/// for the column shows its end, where keys that share a prefix differ
/// (`…sion-179543`, not `session:sessi`); several keys that do not fit are cut with `…`.
fn keys_text(e: &crate::event::Event, width: usize) -> String {
    let key = |op: &crate::event::Operation| {
        format!("{}{}", if op.value.is_none() { "-" } else { "" }, op.key)
    };
    let all: Vec<String> = e.operations.iter().map(key).collect();
    let joined = all.join(", ");
    match all.as_slice() {
        _ if joined.chars().count() <= width => joined,
        [one] => crate::text::ellipsize_start(one, width),
        _ => crate::text::ellipsize(&joined, width),
    }
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

/// The rows shown in a table of `area`: the index of the selected one and the range drawn
/// (only the rows that fit are built). Drawing and clicks both use it.
fn shown(
    rows: &[&crate::tui::app::Row],
    area: Rect,
    view: &ViewState,
) -> (Option<usize>, usize, usize) {
    // The selection, or the first row after it when a filter hides it.
    let selected_idx = match view.selected {
        Some(o) => Some(rows.partition_point(|r| r.event.offset < o)).filter(|&i| i < rows.len()),
        None => rows.len().checked_sub(1),
    };
    let height = area.height.saturating_sub(3) as usize;
    let end = match selected_idx {
        Some(i) if view.selected.is_some() => (i + height / 2 + 1)
            .min(rows.len())
            .max(height.min(rows.len())),
        _ => rows.len(),
    };
    (selected_idx, end.saturating_sub(height), end)
}

/// The offset of the row drawn at screen line `y` of a table in `area` (None: not a row).
pub fn row_at(area: Rect, model: &Model, view: &ViewState, x: u16, y: u16) -> Option<u64> {
    // Inside the borders, below the column titles.
    if x <= area.x
        || x + 1 >= area.x + area.width
        || y < area.y + 2
        || y + 1 >= area.y + area.height
    {
        return None;
    }
    let rows: Vec<&crate::tui::app::Row> = model.visible_rows(view).collect();
    let (_, start, end) = shown(&rows, area, view);
    let i = start + usize::from(y - area.y - 2);
    (i < end).then(|| rows[i].event.offset)
}

pub fn render_table(frame: &mut Frame, area: Rect, model: &Model, view: &ViewState) {
    let rows: Vec<&crate::tui::app::Row> = model.visible_rows(view).collect();
    let (selected_idx, start, end) = shown(&rows, area, view);
    // With `--against`: a first column saying whether the other source agrees.
    let against = model.against.as_ref();
    let mut constraints = vec![
        Constraint::Length(7),
        Constraint::Length(12),
        Constraint::Length(24),
        Constraint::Length(13),
        Constraint::Length(3),
        Constraint::Min(10),
    ];
    if against.is_some() {
        constraints.insert(0, Constraint::Length(2));
    }
    let skip = usize::from(against.is_some());
    // The widths the table will give its columns (inside the borders, one column apart): every
    // cell is fitted to its own, so nothing is cut without `…`.
    let inner = Rect {
        width: area.width.saturating_sub(2),
        ..area
    };
    let widths: Vec<usize> = Layout::horizontal(constraints.clone())
        .spacing(1)
        .split(inner)
        .iter()
        .map(|r| r.width as usize)
        .collect();
    let fit = |i: usize, text: String| Cell::from(crate::text::ellipsize(&text, widths[i + skip]));
    let table_rows: Vec<TableRow> = rows[start..end]
        .iter()
        .map(|r| {
            let e = &r.event;
            let mut cells = vec![
                fit(0, format!("{}", e.offset)),
                fit(1, event_time(e)),
                fit(2, format!("{}/{}", e.namespace, e.agent_id)),
                fit(3, short_txn(&e.txn_id).to_string()),
                fit(4, format!("{}", e.operations.len())),
                Cell::from(keys_text(e, widths[5 + skip])),
            ];
            if let Some(a) = against {
                use crate::tui::app::Agreement;
                let mark = match a.agreement(e.offset) {
                    Agreement::Agrees => Cell::from("="),
                    Agreement::Differs => Cell::from("≠").style(theme::DELETE),
                    Agreement::Unknown => Cell::from("·"),
                };
                cells.insert(0, mark);
            }
            TableRow::new(cells)
        })
        .collect();
    let mut mode = match (view.frozen_at, view.selected) {
        (Some(at), _) => format!(", frozen at #{}", crate::text::thousands(at)),
        (None, None) => ", following".to_string(),
        (None, Some(_)) => String::new(),
    };
    if model.window.detached {
        mode.push_str(", scrolled back: End returns");
    }
    if model.window.pending.is_some() {
        mode.push_str(", reading…");
    }
    let title = format!(
        " events ({} shown{mode}) ",
        crate::text::thousands(rows.len() as u64)
    );
    let table = Table::new(table_rows, constraints)
        .header(
            TableRow::new(
                against
                    .map(|_| "vs")
                    .into_iter()
                    .chain(["offset", "commit time", "agent", "txn_id", "ops", "keys"])
                    .enumerate()
                    .map(|(i, h)| crate::text::ellipsize(h, widths[i])),
            )
            .style(theme::TABLE_HEADER),
        )
        .row_highlight_style(theme::ROW_SELECTED)
        .block(focused_block(&title, view.focus == Focus::Table));
    let mut state = TableState::default();
    state.select(selected_idx.map(|i| i.saturating_sub(start)));
    frame.render_stateful_widget(table, area, &mut state);
}
