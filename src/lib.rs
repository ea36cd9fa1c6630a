//! replayscope: a replay inspector for committed-transaction event logs.
//!
//! Layers, top to bottom (DESIGN.md section 1; dependencies point down only):
//! - [`cli`] (clap) and [`app`] (one module per command) — the binary's side;
//! - front ends: [`tui`] (ratatui, crossterm), [`server`] (`serve`), [`sink`] (where played
//!   events go), [`source`] (where they come from), [`metrics`] (Prometheus, play and serve);
//! - [`wire`]: the gRPC plumbing (protos, pass-through codecs, clients, the reconnect state
//!   machine) that `server` and `source` share and never import each other through;
//! - the core, which knows no tonic, ratatui, crossterm or clap: [`player`], [`state`],
//!   [`flow`], [`schedule`], [`archive`], [`event`], [`text`].

pub mod app;
pub mod archive;
pub mod background_runtime;
pub mod cli;
pub mod error_line;
pub mod event;
pub mod flow;
pub mod inspect;
pub mod logging;
pub mod metrics;
pub mod player;
pub mod schedule;
pub mod server;
pub mod sink;
pub mod source;
pub mod state;
pub mod text;
pub mod tui;
pub mod wire;
