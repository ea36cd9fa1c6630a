//! Settings: the table of defaults, the `--config` file, and how they are layered under the
//! flags (flags > config file > defaults).

pub mod defaults;
pub mod file;
pub mod layer;

pub use file::{ReplayConfig, resolve_path};
