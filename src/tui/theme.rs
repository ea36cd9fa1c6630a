//! Every colour and text style of the inspector, by what it means (trippy's `theme.rs` is the
//! model). Render functions name these; none picks a colour itself. Colour is never the only
//! signal: gauges and the timeline also show fill and position by glyph.

use ratatui::style::{Color, Modifier, Style};

use crate::player::PlayState;
use crate::state::Change;

pub const BOLD: Style = Style::new().add_modifier(Modifier::BOLD);
/// Secondary text: hints, versions, a delete of a missing key.
pub const HINT: Style = Style::new().fg(Color::DarkGray);
/// Something the user should notice now: the source's status, a changed key.
pub const NOTICE: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
pub const FROZEN: Style = Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD);
pub const FILTER: Style = Style::new().fg(Color::Blue);

/// A followed source (the LIVE badge, shown reversed).
pub const LIVE: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);

/// Pane borders.
pub const BORDER: Style = Style::new().fg(Color::DarkGray);
pub const BORDER_FOCUSED: Style = Style::new().fg(Color::Cyan);

/// The event table.
pub const TABLE_HEADER: Style = Style::new().fg(Color::Gray).add_modifier(Modifier::BOLD);
pub const ROW_SELECTED: Style = Style::new().bg(Color::Blue).fg(Color::White);

/// The transaction pane: a write and a delete.
pub const SET: Style = Style::new().fg(Color::Green).add_modifier(Modifier::BOLD);
pub const DELETE: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);

/// Gauges: the credit window (alert at backpressure), the ring, the rate, the lag.
pub const CREDIT: Style = Style::new().fg(Color::Cyan);
pub const ALERT: Style = Style::new().fg(Color::Red);
pub const RING: Style = Style::new().fg(Color::Blue);
pub const RATE: Style = Style::new().fg(Color::Green);
pub const LAG_OK: Style = Style::new().fg(Color::Green);

/// The timeline: the cursor, the ring's range, what was played, what is ahead.
pub const TIMELINE_CURSOR: Style = Style::new().fg(Color::White).add_modifier(Modifier::BOLD);
pub const TIMELINE_RING: Style = Style::new().fg(Color::Blue);
pub const TIMELINE_PLAYED: Style = Style::new().fg(Color::Cyan);
pub const TIMELINE_AHEAD: Style = Style::new().fg(Color::DarkGray);
/// A marker on the timeline and in its list, an A-B loop's ends, a marker's caption.
pub const MARKER: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);

/// Key hints of the footer.
pub const KEY: Style = Style::new().add_modifier(Modifier::REVERSED);
/// Keys of the help overlay.
pub const HELP_KEY: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);

/// The prompt: an invalid input, a valid one, the caret and the frame.
pub const INVALID: Style = Style::new().fg(Color::Red);
pub const VALID: Style = Style::new().fg(Color::Green);
pub const CARET: Style = Style::new().fg(Color::Cyan);
pub const PROMPT_BORDER: Style = Style::new().fg(Color::Cyan);

/// The run report: why it ended, where to resume, its frame.
pub const REASON: Style = Style::new().fg(Color::Yellow);
pub const RESUME: Style = Style::new().fg(Color::Green).add_modifier(Modifier::BOLD);
pub const REPORT_BORDER: Style = Style::new().fg(Color::Yellow);

/// The error banner.
pub const BANNER: Style = Style::new().bg(Color::Red);
pub const BANNER_TEXT: Style = Style::new().fg(Color::White).add_modifier(Modifier::BOLD);
pub const BANNER_BORDER: Style = Style::new().fg(Color::Red);

/// The player's state in the header (shown reversed).
pub fn state(s: PlayState) -> Style {
    let color = match s {
        PlayState::Playing => Color::Green,
        PlayState::Paused => Color::Yellow,
        PlayState::Stopped => Color::Red,
        PlayState::Finished | PlayState::CaughtUp => Color::Cyan,
        PlayState::Seeking => Color::Magenta,
    };
    Style::new().fg(color).add_modifier(Modifier::BOLD)
}

/// A change of the selected transaction in the state pane (its sign says the same).
pub fn change(c: &Change) -> Style {
    let color = match c {
        Change::Added { .. } => Color::Green,
        Change::Changed { .. } => Color::Yellow,
        Change::Deleted { .. } => Color::Red,
        Change::DeletedMissing { .. } => Color::DarkGray,
    };
    Style::new().fg(color).add_modifier(Modifier::BOLD)
}
