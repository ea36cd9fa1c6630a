//! Answers to the questions people open an inspector with (DESIGN.md section 12): how one key
//! changed ([`history`]), what changed inside a value ([`json_diff`]). The TUI and the headless
//! commands use the same code. No terminal or network types here.

pub mod history;
pub mod json_diff;
