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
    /// `M`: a marker at the cursor (a prompt for its name and caption).
    AddMarker,
    /// `'`: the list of markers (Enter goes there).
    MarkerList,
    /// `{` / `}`: the previous / next marker.
    PrevMarker,
    NextMarker,
    /// `A` / `B`: the start / end of an A-B loop (`A` again ends it).
    LoopA,
    LoopB,
    /// `v`: the next screen layout (inspect, transport, present).
    CycleLayout,
    /// A click at a cell of the screen (`double`: the second of two quick clicks there).
    Click {
        column: u16,
        row: u16,
        double: bool,
    },
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
    /// The list of markers is open.
    Markers,
}

/// The actions a key can be bound to in the settings (`[keys] pause = "space"`).
pub const BINDABLE: &[(&str, Action)] = &[
    ("pause", Action::TogglePause),
    ("step", Action::Step),
    ("step-back", Action::StepBack),
    ("faster", Action::SpeedUp),
    ("slower", Action::SpeedDown),
    ("pace", Action::CyclePace),
    ("seek", Action::OpenSeek),
    ("back-10", Action::SeekPercent(-10)),
    ("forward-10", Action::SeekPercent(10)),
    ("stop", Action::Stop),
    ("resume", Action::OpenResume),
    ("freeze", Action::ToggleFreeze),
    ("search", Action::OpenFilter),
    ("history", Action::OpenHistory),
    ("next-match", Action::SearchNext),
    ("previous-match", Action::SearchPrevious),
    ("value", Action::OpenValue),
    ("mark", Action::Mark),
    ("state-diff", Action::StateDiff),
    ("next-divergence", Action::NextDivergence),
    ("add-marker", Action::AddMarker),
    ("markers", Action::MarkerList),
    ("previous-marker", Action::PrevMarker),
    ("next-marker", Action::NextMarker),
    ("loop-a", Action::LoopA),
    ("loop-b", Action::LoopB),
    ("layout", Action::CycleLayout),
    ("panel", Action::FocusNext),
    ("help", Action::ToggleHelp),
    ("quit", Action::Quit),
];

/// The user's own keys (from the settings), looked at before the default ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyMap {
    bindings: Vec<(KeyCode, KeyModifiers, Action)>,
}

impl KeyMap {
    pub fn len(&self) -> usize {
        self.bindings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// Binds the key written as `key` (`x`, `space`, `ctrl-l`, `f5`, `pageup` …) to the action
    /// named `action`.
    pub fn bind(&mut self, action: &str, key: &str) -> Result<(), String> {
        let Some(&(_, a)) = BINDABLE.iter().find(|(n, _)| *n == action) else {
            return Err(format!(
                "unknown action {action:?}: one of {}",
                BINDABLE
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        let (code, mods) = parse_key(key).ok_or_else(|| {
            format!(
                "{action} = key {key:?}: a character, space, enter, tab, esc, up, down, left, \
                 right, pageup, pagedown, home, end, f1 … f12, or ctrl-/alt- before one"
            )
        })?;
        self.bindings.retain(|(c, m, _)| (*c, *m) != (code, mods));
        self.bindings.push((code, mods, a));
        Ok(())
    }

    fn get(&self, key: &KeyEvent) -> Option<Action> {
        // Shift is part of the character (`A`), not a modifier to match.
        let mods = key.modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT);
        self.bindings
            .iter()
            .find(|(c, m, _)| *c == key.code && *m == mods)
            .map(|(_, _, a)| *a)
    }
}

fn parse_key(text: &str) -> Option<(KeyCode, KeyModifiers)> {
    let mut mods = KeyModifiers::NONE;
    let mut rest = text;
    loop {
        if let Some(r) = rest.strip_prefix("ctrl-") {
            mods |= KeyModifiers::CONTROL;
            rest = r;
        } else if let Some(r) = rest.strip_prefix("alt-") {
            mods |= KeyModifiers::ALT;
            rest = r;
        } else {
            break;
        }
    }
    let mut chars = rest.chars();
    let code = match (chars.next(), chars.next()) {
        (Some(c), None) => KeyCode::Char(c),
        _ => match rest {
            "space" => KeyCode::Char(' '),
            "enter" => KeyCode::Enter,
            "tab" => KeyCode::Tab,
            "esc" => KeyCode::Esc,
            "backspace" => KeyCode::Backspace,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "pageup" => KeyCode::PageUp,
            "pagedown" => KeyCode::PageDown,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            f => {
                let n: u8 = f.strip_prefix('f')?.parse().ok()?;
                if !(1..=12).contains(&n) {
                    return None;
                }
                KeyCode::F(n)
            }
        },
    };
    Some((code, mods))
}

pub fn map_key(key: KeyEvent, mode: InputMode, keys: &KeyMap) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if mode == InputMode::Normal
        && let Some(a) = keys.get(&key)
    {
        return Some(a);
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
        InputMode::Markers => match key.code {
            KeyCode::Char('q') => Some(Action::Quit),
            KeyCode::Esc | KeyCode::Char('\'') => Some(Action::Escape),
            KeyCode::Enter => Some(Action::PromptSubmit),
            KeyCode::Up | KeyCode::Char('k') => Some(Action::Up),
            KeyCode::Down | KeyCode::Char('j') => Some(Action::Down),
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
            KeyCode::Char('M') => Action::AddMarker,
            KeyCode::Char('\'') => Action::MarkerList,
            KeyCode::Char('{') => Action::PrevMarker,
            KeyCode::Char('}') => Action::NextMarker,
            KeyCode::Char('A') => Action::LoopA,
            KeyCode::Char('B') => Action::LoopB,
            KeyCode::Char('v') => Action::CycleLayout,
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
        MouseEventKind::Down(crossterm::event::MouseButton::Left) => Some(Action::Click {
            column: m.column,
            row: m.row,
            double: false,
        }),
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
        "M '",
        "add a marker here (name, caption) / the markers (enter: go there)",
    ),
    ("{ }", "previous / next marker"),
    (
        "A B",
        "A-B loop: A marks the start, B the end and loops (A again: off)",
    ),
    ("v", "layout: inspect, transport, present (remembered)"),
    (
        "mouse",
        "click the timeline: seek there; a row: select it (twice: its value)",
    ),
    (
        "timeline",
        "━ played  ┃ current event  ▆ held by the ring  ─ ahead  ◆ marker",
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
            map_key(key(KeyCode::Char(' ')), n, &KeyMap::default()),
            Some(Action::TogglePause)
        );
        assert_eq!(
            map_key(key(KeyCode::Char('.')), n, &KeyMap::default()),
            Some(Action::Step)
        );
        assert_eq!(
            map_key(key(KeyCode::Right), n, &KeyMap::default()),
            Some(Action::Step)
        );
        assert_eq!(
            map_key(key(KeyCode::Char(',')), n, &KeyMap::default()),
            Some(Action::StepBack)
        );
        assert_eq!(
            map_key(key(KeyCode::Left), n, &KeyMap::default()),
            Some(Action::StepBack)
        );
        assert_eq!(
            map_key(key(KeyCode::Char('+')), n, &KeyMap::default()),
            Some(Action::SpeedUp)
        );
        assert_eq!(
            map_key(key(KeyCode::Char('-')), n, &KeyMap::default()),
            Some(Action::SpeedDown)
        );
        assert_eq!(
            map_key(key(KeyCode::Char('p')), n, &KeyMap::default()),
            Some(Action::CyclePace)
        );
        assert_eq!(
            map_key(key(KeyCode::Char('g')), n, &KeyMap::default()),
            Some(Action::OpenSeek)
        );
        assert_eq!(
            map_key(key(KeyCode::Char('[')), n, &KeyMap::default()),
            Some(Action::SeekPercent(-10))
        );
        assert_eq!(
            map_key(key(KeyCode::Char(']')), n, &KeyMap::default()),
            Some(Action::SeekPercent(10))
        );
        assert_eq!(
            map_key(key(KeyCode::Char('s')), n, &KeyMap::default()),
            Some(Action::Stop)
        );
        assert_eq!(
            map_key(key(KeyCode::Char('r')), n, &KeyMap::default()),
            Some(Action::OpenResume)
        );
        assert_eq!(
            map_key(key(KeyCode::Char('f')), n, &KeyMap::default()),
            Some(Action::ToggleFreeze)
        );
        assert_eq!(
            map_key(key(KeyCode::Char('/')), n, &KeyMap::default()),
            Some(Action::OpenFilter)
        );
        assert_eq!(
            map_key(key(KeyCode::Tab), n, &KeyMap::default()),
            Some(Action::FocusNext)
        );
        assert_eq!(
            map_key(key(KeyCode::End), n, &KeyMap::default()),
            Some(Action::End)
        );
        assert_eq!(
            map_key(key(KeyCode::Char('?')), n, &KeyMap::default()),
            Some(Action::ToggleHelp)
        );
        assert_eq!(
            map_key(key(KeyCode::Char('q')), n, &KeyMap::default()),
            Some(Action::Quit)
        );
        assert_eq!(
            map_key(key(KeyCode::Char('x')), n, &KeyMap::default()),
            None
        );
    }

    #[test]
    fn a_prompt_takes_the_characters() {
        let p = InputMode::Prompt;
        assert_eq!(
            map_key(key(KeyCode::Char('q')), p, &KeyMap::default()),
            Some(Action::PromptChar('q'))
        );
        assert_eq!(
            map_key(key(KeyCode::Char(' ')), p, &KeyMap::default()),
            Some(Action::PromptChar(' '))
        );
        assert_eq!(
            map_key(key(KeyCode::Enter), p, &KeyMap::default()),
            Some(Action::PromptSubmit)
        );
        assert_eq!(
            map_key(key(KeyCode::Esc), p, &KeyMap::default()),
            Some(Action::Escape)
        );
        assert_eq!(
            map_key(key(KeyCode::Backspace), p, &KeyMap::default()),
            Some(Action::PromptBackspace)
        );
        let ctrl_c = KeyEvent {
            modifiers: KeyModifiers::CONTROL,
            ..key(KeyCode::Char('c'))
        };
        assert_eq!(map_key(ctrl_c, p, &KeyMap::default()), Some(Action::Quit));
    }

    #[test]
    fn help_closes_on_escape_or_question_mark() {
        let h = InputMode::Help;
        assert_eq!(
            map_key(key(KeyCode::Esc), h, &KeyMap::default()),
            Some(Action::ToggleHelp)
        );
        assert_eq!(
            map_key(key(KeyCode::Char('?')), h, &KeyMap::default()),
            Some(Action::ToggleHelp)
        );
        assert_eq!(
            map_key(key(KeyCode::Char(' ')), h, &KeyMap::default()),
            None
        );
    }

    #[test]
    fn bound_keys_come_before_the_default_ones() {
        let mut keys = KeyMap::default();
        keys.bind("pause", "x").unwrap();
        keys.bind("layout", "ctrl-l").unwrap();
        keys.bind("step", "f5").unwrap();
        let n = InputMode::Normal;
        assert_eq!(
            map_key(key(KeyCode::Char('x')), n, &keys),
            Some(Action::TogglePause)
        );
        // The default key still works; a prompt still takes the character.
        assert_eq!(
            map_key(key(KeyCode::Char(' ')), n, &keys),
            Some(Action::TogglePause)
        );
        assert_eq!(
            map_key(key(KeyCode::Char('x')), InputMode::Prompt, &keys),
            Some(Action::PromptChar('x'))
        );
        let ctrl_l = KeyEvent {
            modifiers: KeyModifiers::CONTROL,
            ..key(KeyCode::Char('l'))
        };
        assert_eq!(map_key(ctrl_l, n, &keys), Some(Action::CycleLayout));
        assert_eq!(map_key(key(KeyCode::F(5)), n, &keys), Some(Action::Step));
        assert!(keys.bind("pause", "spacebar").is_err());
        assert!(keys.bind("pause", "f13").is_err());
        assert!(
            keys.bind("jump", "j")
                .unwrap_err()
                .contains("unknown action")
        );
    }
}
