//! replayscope: a replay inspector for committed-transaction event logs.
//!
//! The core (event, archive) has no tonic or ratatui dependency; the command line sits on it.

pub mod archive;
pub mod bridge;
pub mod cli;
pub mod client;
pub mod commands;
pub mod event;
pub mod flow;
pub mod generate;
pub mod logging;
pub mod player;
pub mod proto;
pub mod schedule;
pub mod server;
pub mod sink;
pub mod source;
pub mod state;
pub mod tui;
