//! Keys (and mouse) to actions: the one place where bindings live.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    TogglePause,
    Step,
    StepBack,
    SpeedUp,
    SpeedDown,
    CyclePace,
    OpenSeek,
    /// Seek by this many percent of the range (negative: back).
    SeekPercent(i32),
    Stop,
    OpenResume,
    ToggleFreeze,
    OpenFilter,
    /// The history of a key (a prompt, prefilled with the selected transaction's key).
    OpenHistory,
    /// `n` / `N`: the next / previous match of the search of the whole source.
    SearchNext,
    SearchPrevious,
    /// Enter: the whole value of what the focused pane shows.
    OpenValue,
    /// `y` in the full-value view: copy it to the clipboard.
    Copy,
    /// `m`: mark the state at the cursor.
    Mark,
    /// `d`: what changed between the marked state and the cursor's.
    StateDiff,
    /// `D` (with `--against`): the next row where the other source disagrees.
    NextDivergence,
    FocusNext,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    ToggleHelp,
    Quit,
    /// Dismiss an overlay, banner or prompt.
    Escape,
    PromptChar(char),
    PromptBackspace,
    /// Editing the prompt's line like a shell's.
    PromptEdit(LineEdit),
    PromptSubmit,
}

/// A shell-like edit of a prompt's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEdit {
    Left,
    Right,
    Home,
    End,
    /// Delete: the character under the cursor.
    Delete,
    /// Ctrl-U: everything before the cursor.
    KillToStart,
    /// Ctrl-W: the word before the cursor.
    KillWord,
    /// ↑ / ↓: earlier / later entries of this prompt's history.
    Older,
    Newer,
}

/// What the keyboard is talking to right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputMode {
    Normal,
    Prompt,
    Help,
    /// The key history overlay is open.
    History,
    /// The full-value view is open.
    Value,
}

pub fn map_key(key: KeyEvent, mode: InputMode) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    match mode {
        InputMode::Prompt => {
            let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
            let edit = |e| Some(Action::PromptEdit(e));
            match key.code {
                KeyCode::Enter => Some(Action::PromptSubmit),
                KeyCode::Esc => Some(Action::Escape),
                KeyCode::Backspace => Some(Action::PromptBackspace),
                KeyCode::Char('u') if ctrl => edit(LineEdit::KillToStart),
                KeyCode::Char('w') if ctrl => edit(LineEdit::KillWord),
                KeyCode::Char('a') if ctrl => edit(LineEdit::Home),
                KeyCode::Char('e') if ctrl => edit(LineEdit::End),
                KeyCode::Left => edit(LineEdit::Left),
                KeyCode::Right => edit(LineEdit::Right),
                KeyCode::Home => edit(LineEdit::Home),
                KeyCode::End => edit(LineEdit::End),
                KeyCode::Delete => edit(LineEdit::Delete),
                KeyCode::Up => edit(LineEdit::Older),
                KeyCode::Down => edit(LineEdit::Newer),
                KeyCode::Char(_) if ctrl => None,
                KeyCode::Char(c) => Some(Action::PromptChar(c)),
                _ => None,
            }
        }
        InputMode::History => match key.code {
            KeyCode::Char('q') => Some(Action::Quit),
            KeyCode::Esc | KeyCode::Char('h') => Some(Action::Escape),
            KeyCode::Enter => Some(Action::PromptSubmit),
            KeyCode::Up | KeyCode::Char('k') => Some(Action::Up),
            KeyCode::Down | KeyCode::Char('j') => Some(Action::Down),
            KeyCode::PageUp => Some(Action::PageUp),
            KeyCode::PageDown => Some(Action::PageDown),
            KeyCode::Home => Some(Action::Home),
            KeyCode::End => Some(Action::End),
            _ => None,
        },
        InputMode::Value => match key.code {
            KeyCode::Char('q') => Some(Action::Quit),
            KeyCode::Esc | KeyCode::Enter => Some(Action::Escape),
            KeyCode::Up | KeyCode::Char('k') => Some(Action::Up),
            KeyCode::Down | KeyCode::Char('j') => Some(Action::Down),
            KeyCode::PageUp => Some(Action::PageUp),
            KeyCode::PageDown | KeyCode::Char(' ') => Some(Action::PageDown),
            KeyCode::Home => Some(Action::Home),
            KeyCode::End => Some(Action::End),
            KeyCode::Char('/') => Some(Action::OpenFilter),
            KeyCode::Char('n') => Some(Action::SearchNext),
            KeyCode::Char('N') => Some(Action::SearchPrevious),
            KeyCode::Char('y') => Some(Action::Copy),
            _ => None,
        },
        InputMode::Help => match key.code {
            KeyCode::Char('q') => Some(Action::Quit),
            KeyCode::Esc | KeyCode::Char('?') | KeyCode::Enter => Some(Action::ToggleHelp),
            _ => None,
        },
        InputMode::Normal => Some(match key.code {
            KeyCode::Char(' ') => Action::TogglePause,
            KeyCode::Char('.') | KeyCode::Right => Action::Step,
            KeyCode::Char(',') | KeyCode::Left => Action::StepBack,
            KeyCode::Char('+') | KeyCode::Char('=') => Action::SpeedUp,
            KeyCode::Char('-') => Action::SpeedDown,
            KeyCode::Char('p') => Action::CyclePace,
            KeyCode::Char('g') => Action::OpenSeek,
            KeyCode::Char('[') => Action::SeekPercent(-10),
            KeyCode::Char(']') => Action::SeekPercent(10),
            KeyCode::Char('s') => Action::Stop,
            KeyCode::Char('r') => Action::OpenResume,
            KeyCode::Char('f') => Action::ToggleFreeze,
            KeyCode::Char('/') => Action::OpenFilter,
            KeyCode::Char('h') => Action::OpenHistory,
            KeyCode::Char('n') => Action::SearchNext,
            KeyCode::Char('N') => Action::SearchPrevious,
            KeyCode::Enter => Action::OpenValue,
            KeyCode::Char('m') => Action::Mark,
            KeyCode::Char('d') => Action::StateDiff,
            KeyCode::Char('D') => Action::NextDivergence,
            KeyCode::Tab => Action::FocusNext,
            KeyCode::Up | KeyCode::Char('k') => Action::Up,
            KeyCode::Down | KeyCode::Char('j') => Action::Down,
            KeyCode::PageUp => Action::PageUp,
            KeyCode::PageDown => Action::PageDown,
            KeyCode::Home => Action::Home,
            KeyCode::End => Action::End,
            KeyCode::Char('?') => Action::ToggleHelp,
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Esc => Action::Escape,
            _ => return None,
        }),
    }
}

pub fn map_mouse(m: MouseEvent) -> Option<Action> {
    match m.kind {
        MouseEventKind::ScrollUp => Some(Action::Up),
        MouseEventKind::ScrollDown => Some(Action::Down),
        _ => None,
    }
}

/// The key hints of the footer and the help overlay: (keys, what).
pub const HELP: &[(&str, &str)] = &[
    ("space", "pause / resume"),
    (". →", "step one event"),
    (", ←", "step back one event"),
    (
        "+ -",
        "speed up / down (0.001x … 1, 1.5, 2, 3, 5, 10, 15, 20 … 100x)",
    ),
    ("p", "cycle pace: realtime, fast, rate"),
    (
        "g",
        "seek: offset, @commit_ts, 09:10:00 or RFC 3339, NN%, +N/-N, /QUERY",
    ),
    ("[ ]", "seek back / forward 10 %"),
    ("s", "stop early (shows the report)"),
    ("r", "resume from an offset"),
    ("f", "freeze the view (playback goes on)"),
    (
        "/",
        "search: keys, values, agent, txn prefix, re:REGEX; narrows the table",
    ),
    ("n N", "next / previous match anywhere in the source"),
    (
        "m d",
        "mark the state here / what changed between the mark and here",
    ),
    (
        "enter",
        "the whole transaction or state, pretty (/ find, y copy via OSC 52)",
    ),
    (
        "h",
        "a key's history: every version, what each changed (enter: go there)",
    ),
    (
        "D",
        "with --against: the next row where the other source disagrees (≠)",
    ),
    (
        "timeline",
        "━ played  ┃ current event  ▆ held by the replay ring  ─ ahead",
    ),
    (
        "gauges",
        "█ filled  ░ free (credit in flight, ring bytes held)",
    ),
    ("tab", "switch panel focus"),
    (
        "↑ ↓ PgUp PgDn Home End",
        "move in the focused panel (End: newest; when live, back to live)",
    ),
    ("?", "this help"),
    ("q", "quit"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyEventState;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent {
            code,
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        }
    }

    #[test]
    fn normal_keys_map_to_the_documented_actions() {
        let n = InputMode::Normal;
        assert_eq!(
            map_key(key(KeyCode::Char(' ')), n),
            Some(Action::TogglePause)
        );
        assert_eq!(map_key(key(KeyCode::Char('.')), n), Some(Action::Step));
        assert_eq!(map_key(key(KeyCode::Right), n), Some(Action::Step));
        assert_eq!(map_key(key(KeyCode::Char(',')), n), Some(Action::StepBack));
        assert_eq!(map_key(key(KeyCode::Left), n), Some(Action::StepBack));
        assert_eq!(map_key(key(KeyCode::Char('+')), n), Some(Action::SpeedUp));
        assert_eq!(map_key(key(KeyCode::Char('-')), n), Some(Action::SpeedDown));
        assert_eq!(map_key(key(KeyCode::Char('p')), n), Some(Action::CyclePace));
        assert_eq!(map_key(key(KeyCode::Char('g')), n), Some(Action::OpenSeek));
        assert_eq!(
            map_key(key(KeyCode::Char('[')), n),
            Some(Action::SeekPercent(-10))
        );
        assert_eq!(
            map_key(key(KeyCode::Char(']')), n),
            Some(Action::SeekPercent(10))
        );
        assert_eq!(map_key(key(KeyCode::Char('s')), n), Some(Action::Stop));
        assert_eq!(
            map_key(key(KeyCode::Char('r')), n),
            Some(Action::OpenResume)
        );
        assert_eq!(
            map_key(key(KeyCode::Char('f')), n),
            Some(Action::ToggleFreeze)
        );
        assert_eq!(
            map_key(key(KeyCode::Char('/')), n),
            Some(Action::OpenFilter)
        );
        assert_eq!(map_key(key(KeyCode::Tab), n), Some(Action::FocusNext));
        assert_eq!(map_key(key(KeyCode::End), n), Some(Action::End));
        assert_eq!(
            map_key(key(KeyCode::Char('?')), n),
            Some(Action::ToggleHelp)
        );
        assert_eq!(map_key(key(KeyCode::Char('q')), n), Some(Action::Quit));
        assert_eq!(map_key(key(KeyCode::Char('x')), n), None);
    }

    #[test]
    fn a_prompt_takes_the_characters() {
        let p = InputMode::Prompt;
        assert_eq!(
            map_key(key(KeyCode::Char('q')), p),
            Some(Action::PromptChar('q'))
        );
        assert_eq!(
            map_key(key(KeyCode::Char(' ')), p),
            Some(Action::PromptChar(' '))
        );
        assert_eq!(map_key(key(KeyCode::Enter), p), Some(Action::PromptSubmit));
        assert_eq!(map_key(key(KeyCode::Esc), p), Some(Action::Escape));
        assert_eq!(
            map_key(key(KeyCode::Backspace), p),
            Some(Action::PromptBackspace)
        );
        let ctrl_c = KeyEvent {
            modifiers: KeyModifiers::CONTROL,
            ..key(KeyCode::Char('c'))
        };
        assert_eq!(map_key(ctrl_c, p), Some(Action::Quit));
    }

    #[test]
    fn help_closes_on_escape_or_question_mark() {
        let h = InputMode::Help;
        assert_eq!(map_key(key(KeyCode::Esc), h), Some(Action::ToggleHelp));
        assert_eq!(
            map_key(key(KeyCode::Char('?')), h),
            Some(Action::ToggleHelp)
        );
        assert_eq!(map_key(key(KeyCode::Char(' ')), h), None);
    }
}
