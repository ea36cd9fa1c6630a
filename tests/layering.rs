//! The layering of DESIGN.md section 1, checked on the source text: the core imports no tonic,
//! ratatui, crossterm or clap and nothing from the layers above it; `source/` never imports
//! `server/`, and `server/` uses only the `Source` interface, not the concrete sources; only
//! `wire/` (and the server's own transport) know tonic's codec and channel types; clap is the
//! CLI's, ratatui and crossterm the TUI's. A violation names the file, the line and the rule.

use std::path::{Path, PathBuf};

/// The layer a file belongs to: the first component under `src/` (`src/player/pace.rs` and
/// `src/player.rs` are both `player`).
fn layer(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Code lines (comments dropped) with their numbers.
fn code_lines(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let code = l.split("//").next().unwrap_or("").trim();
            (!code.is_empty()).then(|| (i + 1, code.to_string()))
        })
        .collect()
}

const CORE: [&str; 7] = [
    "event", "archive", "flow", "player", "state", "schedule", "text",
];
const UPPER: [&str; 8] = [
    "app", "cli", "tui", "server", "sink", "metrics", "logging", "main",
];

/// What a line of a file in `layer` must not mention, and why.
fn forbidden(layer: &str) -> Vec<(String, &'static str)> {
    let mut rules: Vec<(String, &'static str)> = Vec::new();
    let core = CORE.contains(&layer);
    if core {
        for krate in ["tonic", "ratatui", "crossterm", "clap"] {
            rules.push((
                format!("{krate}::"),
                "the core knows no tonic, ratatui, crossterm or clap",
            ));
            rules.push((
                format!("use {krate}"),
                "the core knows no tonic, ratatui, crossterm or clap",
            ));
        }
        for upper in UPPER {
            rules.push((
                format!("crate::{upper}"),
                "the core imports nothing from the layers above it",
            ));
        }
        // The generated messages are the shared vocabulary; the rest of wire/ is not the core's.
        for w in ["client", "codec", "reconnect"] {
            rules.push((
                format!("crate::wire::{w}"),
                "the core uses wire/ only for the generated messages",
            ));
        }
        for s in ["remote", "statehouse", "open", "archive::"] {
            rules.push((
                format!("crate::source::{s}"),
                "the core uses only the Source interface",
            ));
        }
    }
    if layer == "source" {
        rules.push(("crate::server".into(), "source/ never imports server/"));
    }
    if layer == "server" {
        for s in ["remote", "statehouse", "open", "archive"] {
            rules.push((
                format!("crate::source::{s}"),
                "server/ streams from the Source interface, not a concrete source",
            ));
        }
    }
    if !["wire", "server"].contains(&layer) {
        for t in [
            "tonic::codec",
            "tonic::transport",
            "tonic::client",
            "Channel>",
        ] {
            rules.push((
                t.to_string(),
                "only wire/ knows tonic's codec and channel types",
            ));
        }
    }
    if !["cli", "main"].contains(&layer) {
        rules.push(("clap::".into(), "clap is the command line's"));
        rules.push(("use clap".into(), "clap is the command line's"));
    }
    if !["tui", "app"].contains(&layer) {
        for krate in ["ratatui", "crossterm"] {
            rules.push((
                format!("{krate}::"),
                "ratatui and crossterm are the inspector's",
            ));
        }
    }
    if ["wire", "source", "sink", "tui", "server", "metrics"].contains(&layer) {
        for upper in ["app", "cli"] {
            rules.push((
                format!("crate::{upper}"),
                "front ends and plumbing do not reach up into the application",
            ));
        }
    }
    if layer == "wire" {
        for s in ["server", "source", "sink", "tui"] {
            rules.push((
                format!("crate::{s}"),
                "wire/ is plumbing under the server and the sources",
            ));
        }
    }
    rules
}

#[test]
fn dependencies_point_down_only() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    assert!(
        files.len() > 40,
        "found only {} files under src/",
        files.len()
    );
    let mut violations = Vec::new();
    for path in &files {
        let layer = layer(path);
        let rules = forbidden(&layer);
        let text = std::fs::read_to_string(path).unwrap();
        for (n, line) in code_lines(&text) {
            for (pattern, why) in &rules {
                if line.contains(pattern.as_str()) {
                    violations.push(format!(
                        "{}:{n}: {why} ({pattern:?} in `{line}`)",
                        path.strip_prefix(src()).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_checker_catches_what_it_should() {
    // The rules themselves: a core file naming tonic, source/ naming server/, and a front end
    // reaching into wire/'s transport are all caught.
    let caught = |layer: &str, line: &str| {
        forbidden(layer)
            .iter()
            .any(|(p, _)| line.contains(p.as_str()))
    };
    assert!(caught("player", "use tonic::Status;"));
    assert!(caught("archive", "let x = crate::server::describe(&a);"));
    assert!(caught("source", "use crate::server::ServerContext;"));
    assert!(caught("server", "use crate::source::remote::RemoteSource;"));
    assert!(caught("sink", "use tonic::transport::Channel;"));
    assert!(caught("state", "use ratatui::Frame;"));
    assert!(caught("tui", "use clap::Parser;"));
    assert!(!caught(
        "server",
        "use crate::source::{Source, StoredEvent};"
    ));
    assert!(!caught(
        "event",
        "use crate::wire::proto::replayscope::v1::ArchivedEvent;"
    ));
    assert!(!caught("cli", "use clap::{Args, Parser};"));
    // Comments do not count.
    assert_eq!(
        code_lines("// tonic::Status\nlet a = 1; // clap::x"),
        vec![(2, "let a = 1;".to_string())]
    );
}
