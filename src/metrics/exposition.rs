//! The Prometheus text exposition format (version 0.0.4): `# HELP`, `# TYPE`, then one sample
//! line per label set.

use std::fmt::Write as _;

/// What a metric family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

impl MetricKind {
    fn label(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// Builds one exposition: families named `{prefix}{name}`, every sample carrying the common
/// labels (rendered `name="value",…`, possibly empty) before its own.
pub struct Exposition {
    prefix: &'static str,
    common_labels: String,
    out: String,
}

impl Exposition {
    pub fn new(prefix: &'static str, common_labels: impl Into<String>) -> Exposition {
        Exposition {
            prefix,
            common_labels: common_labels.into(),
            out: String::new(),
        }
    }

    /// One family: its help and type lines, then a sample per `(labels, value)` row (`labels`
    /// rendered `name="value",…` or empty).
    pub fn family(
        &mut self,
        name: &str,
        kind: MetricKind,
        help: &str,
        rows: &[(&str, String)],
    ) -> &mut Self {
        let full = format!("{}{name}", self.prefix);
        let _ = writeln!(self.out, "# HELP {full} {help}");
        let _ = writeln!(self.out, "# TYPE {full} {}", kind.label());
        for (labels, value) in rows {
            let labels = match (self.common_labels.is_empty(), labels.is_empty()) {
                (true, true) => String::new(),
                (false, true) => format!("{{{}}}", self.common_labels),
                (true, false) => format!("{{{labels}}}"),
                (false, false) => format!("{{{},{labels}}}", self.common_labels),
            };
            let _ = writeln!(self.out, "{full}{labels} {value}");
        }
        self
    }

    /// One family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: MetricKind, help: &str, value: String) -> &mut Self {
        self.family(name, kind, help, &[("", value)])
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value escaped for the exposition (backslash, quote, newline).
pub fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_and_own_labels_are_joined() {
        let mut e = Exposition::new("x_", "");
        e.family(
            "up_total",
            MetricKind::Counter,
            "Ups.",
            &[("rpc=\"a\"", "1".into())],
        )
        .single("free", MetricKind::Gauge, "Free.", "2".into());
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP x_up_total Ups.\n# TYPE x_up_total counter\nx_up_total{rpc=\"a\"} 1\n\
             # HELP x_free Free.\n# TYPE x_free gauge\nx_free 2\n"
        );
        let mut e = Exposition::new("y_", format!("n=\"{}\"", label_value("a\"b")));
        e.single("g", MetricKind::Gauge, "G.", "0".into());
        assert!(e.finish().ends_with("y_g{n=\"a\\\"b\"} 0\n"));
    }
}
