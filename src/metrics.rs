//! Prometheus metrics shared by `play --metrics` and `serve --metrics`: one text exposition
//! writer ([`Exposition`]) and one `GET /metrics` endpoint ([`serve_metrics`]). What is counted
//! lives with the command that counts it; how it is written and served lives here.

pub mod endpoint;
pub mod exposition;

pub use endpoint::{Render, serve_metrics};
pub use exposition::{Exposition, MetricKind, label_value};
