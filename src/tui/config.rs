//! The user's settings for the inspector: `$XDG_CONFIG_HOME/replayscope/config.toml` (else
//! `~/.config/replayscope/config.toml`). The layout chosen with `v` is written back to it;
//! `--layout` wins over it for one run.
//!
//! ```toml
//! layout = "inspect"     # inspect | transport | present
//! theme = "color"        # color | mono (no colours: bold, reverse and glyphs only)
//!
//! [keys]                 # an action = a key; the default keys keep working
//! pause = "space"
//! step = "l"
//! layout = "ctrl-l"
//! ```
//!
//! An unknown setting, an unknown action or a key that cannot be read is an error naming the
//! file and the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::tui::app::LayoutKind;
use crate::tui::input::KeyMap;

/// The colours of the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Theme {
    #[default]
    Color,
    /// No colours: bold, reverse video and glyphs carry every signal (as under `NO_COLOR`).
    Mono,
}

impl Theme {
    fn parse(s: &str) -> Option<Theme> {
        match s {
            "color" | "colour" => Some(Theme::Color),
            "mono" => Some(Theme::Mono),
            _ => None,
        }
    }
}

/// The settings read from the file (absent ones: the defaults).
#[derive(Debug, Clone, Default)]
pub struct UiConfig {
    /// Where they were read from (and the layout is written back to).
    pub path: Option<PathBuf>,
    pub layout: Option<LayoutKind>,
    pub theme: Theme,
    pub keys: KeyMap,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    layout: Option<toml::Spanned<String>>,
    theme: Option<toml::Spanned<String>>,
    #[serde(default)]
    keys: BTreeMap<String, toml::Spanned<String>>,
}

/// The file's place: `$XDG_CONFIG_HOME/replayscope/config.toml`, else under `~/.config`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("replayscope").join("config.toml"))
}

/// A problem with the file: one line naming it (and the line in it).
#[derive(Debug, thiserror::Error)]
#[error("{path}{line}: {message}")]
pub struct ConfigFileError {
    path: String,
    /// ` line N` or nothing.
    line: String,
    message: String,
}

fn line_of(text: &str, at: usize) -> String {
    format!(
        " line {}",
        text[..at.min(text.len())].matches('\n').count() + 1
    )
}

impl UiConfig {
    /// Reads the file at `path`; a missing file is the defaults.
    pub fn load(path: &Path) -> Result<UiConfig, ConfigFileError> {
        let name = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(UiConfig {
                    path: Some(path.to_path_buf()),
                    ..Default::default()
                });
            }
            Err(e) => {
                return Err(ConfigFileError {
                    path: name,
                    line: String::new(),
                    message: e.to_string(),
                });
            }
        };
        let mut config = UiConfig::parse(&text).map_err(|(line, message)| ConfigFileError {
            path: name,
            line,
            message,
        })?;
        config.path = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses the file's text; the error is (` line N`, what is wrong).
    pub fn parse(text: &str) -> Result<UiConfig, (String, String)> {
        let form: FileForm = toml::from_str(text).map_err(|e| {
            (
                e.span().map(|s| line_of(text, s.start)).unwrap_or_default(),
                e.message().trim().to_string(),
            )
        })?;
        let mut config = UiConfig::default();
        if let Some(l) = form.layout {
            config.layout = Some(LayoutKind::parse(l.get_ref()).ok_or_else(|| {
                (
                    line_of(text, l.span().start),
                    format!(
                        "layout {:?}: one of inspect, transport, present",
                        l.get_ref()
                    ),
                )
            })?);
        }
        if let Some(t) = form.theme {
            config.theme = Theme::parse(t.get_ref()).ok_or_else(|| {
                (
                    line_of(text, t.span().start),
                    format!("theme {:?}: one of color, mono", t.get_ref()),
                )
            })?;
        }
        for (action, key) in &form.keys {
            config
                .keys
                .bind(action, key.get_ref())
                .map_err(|e| (line_of(text, key.span().start), format!("[keys] {e}")))?;
        }
        Ok(config)
    }

    /// Writes `layout` into the file (other lines as they are), through a temporary file.
    pub fn save_layout(&self, layout: LayoutKind) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Err("no place for the settings ($XDG_CONFIG_HOME and $HOME unset)".into());
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let next = with_layout(&text, layout);
        let fail = |e: std::io::Error| format!("{}: {e}", path.display());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        crate::archive::storage::write_replacing(path, next.as_bytes()).map_err(fail)
    }
}

/// The file's text with its top-level `layout` set (replaced where it is, else added first).
fn with_layout(text: &str, layout: LayoutKind) -> String {
    let line = format!("layout = \"{}\"", layout.name());
    let mut out = Vec::new();
    let mut done = false;
    let mut top_level = true;
    for l in text.lines() {
        let t = l.trim_start();
        if t.starts_with('[') {
            top_level = false;
        }
        if top_level
            && !done
            && t.strip_prefix("layout")
                .is_some_and(|r| r.trim_start().starts_with('='))
        {
            out.push(line.clone());
            done = true;
        } else {
            out.push(l.to_string());
        }
    }
    if !done {
        out.insert(0, line);
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_bindings_are_read() {
        let c = UiConfig::parse(
            "# mine\nlayout = \"present\"\ntheme = \"mono\"\n[keys]\npause = \"x\"\nlayout = \"ctrl-l\"\n",
        )
        .unwrap();
        assert_eq!(c.layout, Some(LayoutKind::Present));
        assert_eq!(c.theme, Theme::Mono);
        assert_eq!(c.keys.len(), 2);
    }

    #[test]
    fn a_bad_key_or_binding_is_one_line_naming_the_line() {
        for (text, line, what) in [
            (
                "layout = \"inspect\"\nlayot = \"present\"\n",
                2,
                "unknown field `layot`",
            ),
            (
                "[keys]\npause = \"space\"\npuase = \"x\"\n",
                3,
                "unknown action \"puase\"",
            ),
            ("[keys]\n\npause = \"spacebar\"\n", 3, "key \"spacebar\""),
            ("layout = \"big\"\n", 1, "layout \"big\""),
            ("theme = 3\n", 1, "invalid type"),
        ] {
            let (l, message) = UiConfig::parse(text).expect_err(text);
            assert_eq!(l, format!(" line {line}"), "{text}: {message}");
            assert!(message.contains(what), "{text}: {message}");
            assert!(!message.contains('\n'), "{message}");
        }
        // Through the file: its name, the line, the problem.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[keys]\nstep = \"\"\n").unwrap();
        let e = UiConfig::load(&path).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{} line 2: [keys] step", path.display())),
            "{e}"
        );
    }

    #[test]
    fn the_layout_is_written_back_keeping_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replayscope").join("config.toml");
        let c = UiConfig::load(&path).unwrap();
        assert_eq!(c.layout, None);
        c.save_layout(LayoutKind::Present).unwrap();
        assert_eq!(
            UiConfig::load(&path).unwrap().layout,
            Some(LayoutKind::Present)
        );
        std::fs::write(
            &path,
            "theme = \"mono\" # mine\nlayout = \"present\"\n[keys]\nlayout = \"L\"\n",
        )
        .unwrap();
        c.save_layout(LayoutKind::Transport).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "theme = \"mono\" # mine\nlayout = \"transport\"\n[keys]\nlayout = \"L\"\n"
        );
        assert_eq!(UiConfig::load(&path).unwrap().theme, Theme::Mono);
    }
}
