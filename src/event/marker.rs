//! Markers (DESIGN.md section 14): named positions with an optional caption, for demos and
//! walkthroughs. `mark:NAME` is a position wherever positions are taken. They are kept in a
//! file beside the source (`ARCHIVE.markers.json`, or `--markers FILE`) or in the archive
//! itself (an MCAP metadata record `replayscope.markers`); this module holds the set and its
//! JSON form, not where it is stored.

use serde::{Deserialize, Serialize};

use super::Position;

/// One named position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Marker {
    pub name: String,
    /// Where it is, as users write positions (`1200`, `@57`, an RFC 3339 time).
    pub position: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
}

impl Marker {
    /// `NAME@POS` (the form `mark --add` takes), with a caption.
    pub fn parse_spec(spec: &str, caption: Option<String>) -> Result<Marker, String> {
        let (name, pos) = spec.split_once('@').ok_or_else(|| {
            format!("{spec:?}: expected NAME@POSITION (e.g. intro@1200, plan@@57)")
        })?;
        check_name(name)?;
        let position: Position = pos
            .parse()
            .map_err(|e: super::PositionParseError| e.to_string())?;
        if matches!(position, Position::Marker(_)) {
            return Err(format!(
                "{spec:?}: a marker is at a position, not at another marker"
            ));
        }
        Ok(Marker {
            name: name.to_string(),
            position: pos.trim().to_string(),
            caption,
        })
    }

    /// Its position, parsed.
    pub fn position(&self) -> Result<Position, String> {
        match self.position.parse::<Position>() {
            Ok(Position::Marker(_)) | Err(_) => Err(format!(
                "marker {:?}: {:?} is not an offset, @commit_ts or RFC 3339 time",
                self.name, self.position
            )),
            Ok(p) => Ok(p),
        }
    }
}

/// A marker name: letters, digits, `-`, `_`, `.`; at most 64 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "marker name {name:?}: use letters, digits, '-', '_' or '.' (at most 64)"
        ))
    }
}

/// The markers of a source, in the order they were added (names unique).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkerSet {
    pub markers: Vec<Marker>,
}

impl MarkerSet {
    pub fn is_empty(&self) -> bool {
        self.markers.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Marker> {
        self.markers.iter().find(|m| m.name == name)
    }

    /// Adds `m`, replacing a marker of the same name.
    pub fn put(&mut self, m: Marker) {
        match self.markers.iter_mut().find(|x| x.name == m.name) {
            Some(x) => *x = m,
            None => self.markers.push(m),
        }
    }

    /// Removes the marker named; false when there is none.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.markers.len();
        self.markers.retain(|m| m.name != name);
        self.markers.len() != before
    }

    /// `other`'s markers over these (a name in both takes `other`'s).
    pub fn merged(mut self, other: &MarkerSet) -> MarkerSet {
        for m in &other.markers {
            self.put(m.clone());
        }
        self
    }

    /// `pos` with a marker reference replaced by the marker's own position; an unknown name is
    /// an error listing the names there are.
    pub fn resolve(&self, pos: &Position) -> Result<Position, String> {
        let Position::Marker(name) = pos else {
            return Ok(pos.clone());
        };
        match self.get(name) {
            Some(m) => m.position(),
            None if self.markers.is_empty() => Err(format!(
                "no marker {name:?}: this source has no markers (add one with `replayscope mark` \
                 or M in the inspector)"
            )),
            None => Err(format!(
                "no marker {name:?}; the markers are {}",
                self.markers
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// Reads the JSON form (`{"markers": [{name, position, caption}]}`), checking every
    /// marker; `origin` names where it came from in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<MarkerSet, String> {
        let set: MarkerSet = serde_json::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        let mut seen = std::collections::BTreeSet::new();
        for m in &set.markers {
            check_name(&m.name).map_err(|e| format!("{origin}: {e}"))?;
            m.position().map_err(|e| format!("{origin}: {e}"))?;
            if !seen.insert(m.name.as_str()) {
                return Err(format!("{origin}: marker {:?} is there twice", m.name));
            }
        }
        Ok(set)
    }

    pub fn to_json(&self) -> String {
        // Plain data: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_parse_resolve_and_round_trip() {
        let mut set = MarkerSet::default();
        set.put(Marker::parse_spec("intro@12", Some("Hello".into())).unwrap());
        set.put(Marker::parse_spec("plan@@57", None).unwrap());
        set.put(Marker::parse_spec("late@2026-11-02T09:10:00Z", None).unwrap());
        assert_eq!(
            set.resolve(&"mark:plan".parse().unwrap()),
            Ok(Position::CommitTs(57))
        );
        assert_eq!(set.resolve(&Position::Offset(3)), Ok(Position::Offset(3)));
        let e = set.resolve(&"mark:nope".parse().unwrap()).unwrap_err();
        assert!(e.contains("intro, plan, late"), "{e}");
        let back = MarkerSet::from_json(&set.to_json(), "x").unwrap();
        assert_eq!(back, set);
        // Replacing by name, removing.
        set.put(Marker::parse_spec("intro@13", None).unwrap());
        assert_eq!(set.get("intro").unwrap().position, "13");
        assert!(set.remove("plan") && !set.remove("plan"));
        for bad in ["intro", "a b@1", "@1", "x@mark:y", "x@soon"] {
            assert!(Marker::parse_spec(bad, None).is_err(), "{bad}");
        }
        assert!(
            MarkerSet::from_json(
                r#"{"markers":[{"name":"a","position":"1"},{"name":"a","position":"2"}]}"#,
                "f"
            )
            .is_err()
        );
        assert!(
            MarkerSet::from_json(r#"{"markers":[{"name":"a","position":"1","x":1}]}"#, "f")
                .is_err()
        );
    }
}
