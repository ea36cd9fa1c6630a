//! The event model (DESIGN.md section 2): committed transactions in commit order, their
//! operations, positions (offset / commit_ts / wall time) and the conversions between the
//! JSON form users see and the protobuf form stored in archives and sent on the wire.

pub mod agent_map;
pub mod generate;
pub mod marker;
pub mod value;
pub mod wire;

pub use agent_map::AgentMap;
use std::fmt;
pub use value::ObjectValue;

use std::sync::Arc;

use prost::Message as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::wire::proto::replayscope::v1::ArchivedEvent;
use crate::wire::proto::statehouse::v1 as sh;

/// A JSON object: the value of one key.
pub type JsonObject = Map<String, Value>;

/// One committed transaction.
///
/// Serialized (JSON Lines) with the fields in this order; `commit_time_ns` is omitted when
/// unknown, `value` is `null` for a delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// 0-based position in the archive's commit order (contiguous, unique).
    pub offset: u64,
    pub txn_id: String,
    /// The source's commit timestamp (Statehouse: a logical counter, not a clock).
    pub commit_ts: u64,
    /// Wall-clock commit time (Unix ns), where the source has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_time_ns: Option<u64>,
    /// Shared: events of one channel carry the same strings.
    pub namespace: Arc<str>,
    pub agent_id: Arc<str>,
    pub operations: Vec<Operation>,
}

/// One write (`value` = `Some`) or delete (`value` = `None`) of a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    /// Shared with the materialized state's key.
    pub key: Arc<str>,
    /// Shared (materialized state and diffs hold it without copying) and decoded on first use.
    pub value: Option<ObjectValue>,
    pub version: u64,
}

/// Why a value could not be converted between JSON and `google.protobuf.Struct`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error(
        "key {key:?}: integer {number} cannot be stored exactly (protobuf Struct numbers are \
         64-bit floats, exact only up to 2^53)"
    )]
    InexactInteger { key: String, number: String },
    #[error("key {key:?}: number {number} has no JSON form (NaN or infinite)")]
    NonFinite { key: String, number: String },
    #[error("protobuf decode: {0}")]
    Decode(String),
}

/// Largest integer magnitude an f64 holds exactly.
const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0; // 2^53

impl Event {
    /// The protobuf form stored in archives (also a valid Statehouse `ReplayEvent`).
    pub fn to_archived(&self) -> Result<ArchivedEvent, ValueError> {
        let operations = self
            .operations
            .iter()
            .map(|op| {
                Ok(sh::Operation {
                    key: op.key.to_string(),
                    value: match &op.value {
                        Some(v) => Some(object_to_struct(v.object(&op.key)?, &op.key)?),
                        None => None,
                    },
                    version: op.version,
                })
            })
            .collect::<Result<Vec<_>, ValueError>>()?;
        Ok(ArchivedEvent {
            txn_id: self.txn_id.clone(),
            commit_ts: self.commit_ts,
            operations,
            offset: self.offset,
            commit_time_ns: self.commit_time_ns,
            namespace: self.namespace.to_string(),
            agent_id: self.agent_id.to_string(),
        })
    }

    /// Encoded `ArchivedEvent` bytes.
    pub fn encode(&self) -> Result<Vec<u8>, ValueError> {
        self.encode_at(self.offset)
    }

    /// Encoded `ArchivedEvent` bytes with `offset` in place of the event's own (re-numbering
    /// while copying). Values that came from protobuf are copied as they are, not converted to
    /// JSON and back; the bytes equal `to_archived()?.encode_to_vec()` for such values.
    pub fn encode_at(&self, offset: u64) -> Result<Vec<u8>, ValueError> {
        use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
        fn len_field(tag_len: usize, len: usize) -> usize {
            tag_len + encoded_len_varint(len as u64) + len
        }
        fn put_str(tag: u32, s: &str, buf: &mut Vec<u8>) {
            encode_key(tag, WireType::LengthDelimited, buf);
            encode_varint(s.len() as u64, buf);
            buf.extend_from_slice(s.as_bytes());
        }
        let mut converted: Vec<Option<Vec<u8>>> = Vec::new();
        let mut size = self.txn_id.len() + self.namespace.len() + self.agent_id.len() + 40;
        for (i, op) in self.operations.iter().enumerate() {
            if let Some(v) = &op.value
                && v.raw().is_none()
            {
                if converted.is_empty() {
                    converted.resize(self.operations.len(), None);
                }
                converted[i] = Some(object_to_struct(v.object(&op.key)?, &op.key)?.encode_to_vec());
            }
            size += op.key.len()
                + 24
                + op.value
                    .as_ref()
                    .map_or(0, |v| v.raw().map_or(0, |r| r.len()));
        }
        let mut buf = Vec::with_capacity(size);
        if !self.txn_id.is_empty() {
            put_str(1, &self.txn_id, &mut buf);
        }
        if self.commit_ts != 0 {
            prost::encoding::uint64::encode(2, &self.commit_ts, &mut buf);
        }
        for (i, op) in self.operations.iter().enumerate() {
            let value: Option<&[u8]> = match &op.value {
                None => None,
                Some(v) => Some(match v.raw() {
                    Some(raw) => raw,
                    None => converted[i].as_deref().unwrap_or_default(),
                }),
            };
            let mut len = 0;
            if !op.key.is_empty() {
                len += len_field(1, op.key.len());
            }
            if let Some(v) = value {
                len += len_field(1, v.len());
            }
            if op.version != 0 {
                len += 1 + encoded_len_varint(op.version);
            }
            encode_key(3, WireType::LengthDelimited, &mut buf);
            encode_varint(len as u64, &mut buf);
            if !op.key.is_empty() {
                put_str(1, &op.key, &mut buf);
            }
            if let Some(v) = value {
                encode_key(2, WireType::LengthDelimited, &mut buf);
                encode_varint(v.len() as u64, &mut buf);
                buf.extend_from_slice(v);
            }
            if op.version != 0 {
                prost::encoding::uint64::encode(3, &op.version, &mut buf);
            }
        }
        if offset != 0 {
            prost::encoding::uint64::encode(16, &offset, &mut buf);
        }
        if let Some(t) = self.commit_time_ns {
            prost::encoding::uint64::encode(17, &t, &mut buf);
        }
        if !self.namespace.is_empty() {
            put_str(18, &self.namespace, &mut buf);
        }
        if !self.agent_id.is_empty() {
            put_str(19, &self.agent_id, &mut buf);
        }
        Ok(buf)
    }

    /// Decodes stored `ArchivedEvent` bytes.
    /// Decodes stored `ArchivedEvent` bytes (values stay encoded until used).
    pub fn decode(bytes: &[u8]) -> Result<Event, ValueError> {
        Event::decode_bytes(&bytes::Bytes::copy_from_slice(bytes))
    }

    /// Like [`Event::decode`], sharing the buffer (no copy).
    pub fn decode_bytes(bytes: &bytes::Bytes) -> Result<Event, ValueError> {
        wire::decode_event(bytes, &mut wire::NameCache::default())
    }

    /// Decodes every value now (so that a bad one is reported here, not on first use).
    pub fn check_values(&self) -> Result<(), ValueError> {
        for op in &self.operations {
            if let Some(v) = &op.value {
                v.object(&op.key)?;
            }
        }
        Ok(())
    }

    pub fn from_archived(a: ArchivedEvent) -> Result<Event, ValueError> {
        let operations = a
            .operations
            .into_iter()
            .map(|op| {
                let value = match op.value {
                    Some(s) => Some(ObjectValue::from_object(struct_to_object(s, &op.key)?)),
                    None => None,
                };
                Ok(Operation {
                    key: Arc::from(op.key),
                    value,
                    version: op.version,
                })
            })
            .collect::<Result<Vec<_>, ValueError>>()?;
        Ok(Event {
            offset: a.offset,
            txn_id: a.txn_id,
            commit_ts: a.commit_ts,
            commit_time_ns: a.commit_time_ns,
            namespace: Arc::from(a.namespace),
            agent_id: Arc::from(a.agent_id),
            operations,
        })
    }

    /// `"{namespace}/{agent_id}"`, the MCAP topic of the event's channel.
    pub fn topic(&self) -> String {
        topic(&self.namespace, &self.agent_id)
    }

    /// One JSON line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        // Serializing plain data to a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

pub fn topic(namespace: &str, agent_id: &str) -> String {
    format!("{namespace}/{agent_id}")
}

pub(crate) fn object_to_struct(
    obj: &JsonObject,
    key: &str,
) -> Result<prost_types::Struct, ValueError> {
    let mut fields = std::collections::BTreeMap::new();
    for (k, v) in obj {
        fields.insert(k.clone(), json_to_value(v, key)?);
    }
    Ok(prost_types::Struct { fields })
}

fn json_to_value(v: &Value, key: &str) -> Result<prost_types::Value, ValueError> {
    use prost_types::value::Kind;
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(number_to_f64(n, key)?),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items
                .iter()
                .map(|i| json_to_value(i, key))
                .collect::<Result<_, _>>()?,
        }),
        Value::Object(o) => Kind::StructValue(object_to_struct(o, key)?),
    };
    Ok(prost_types::Value { kind: Some(kind) })
}

fn number_to_f64(n: &Number, key: &str) -> Result<f64, ValueError> {
    if let Some(i) = n.as_i64() {
        let f = i as f64;
        if i.unsigned_abs() > MAX_EXACT_INT as u64 {
            return Err(ValueError::InexactInteger {
                key: key.to_string(),
                number: n.to_string(),
            });
        }
        return Ok(f);
    }
    if n.as_u64().is_some() {
        return Err(ValueError::InexactInteger {
            key: key.to_string(),
            number: n.to_string(),
        });
    }
    Ok(n.as_f64().unwrap_or(f64::NAN))
}

pub(crate) fn struct_to_object(
    s: prost_types::Struct,
    key: &str,
) -> Result<JsonObject, ValueError> {
    let mut obj = Map::new();
    for (k, v) in s.fields {
        obj.insert(k, value_to_json(v, key)?);
    }
    Ok(obj)
}

fn value_to_json(v: prost_types::Value, key: &str) -> Result<Value, ValueError> {
    use prost_types::value::Kind;
    Ok(match v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::NumberValue(f)) => f64_to_json(f, key)?,
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::ListValue(l)) => Value::Array(
            l.values
                .into_iter()
                .map(|i| value_to_json(i, key))
                .collect::<Result<_, _>>()?,
        ),
        Some(Kind::StructValue(s)) => Value::Object(struct_to_object(s, key)?),
    })
}

/// Integral floats within 2^53 come back as JSON integers, so `1` round-trips as `1`.
fn f64_to_json(f: f64, key: &str) -> Result<Value, ValueError> {
    if !f.is_finite() {
        return Err(ValueError::NonFinite {
            key: key.to_string(),
            number: f.to_string(),
        });
    }
    if f.fract() == 0.0 && f.abs() <= MAX_EXACT_INT {
        return Ok(Value::Number(Number::from(f as i64)));
    }
    Ok(Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null))
}

/// A position in an archive, as users write it: `1200` (offset), `@57` (commit_ts), an RFC
/// 3339 time (`2026-11-23T12:00:00Z`), or `mark:NAME` (a marker of the source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    Offset(u64),
    CommitTs(u64),
    /// Wall-clock time, Unix ns.
    Time(u64),
    /// A marker of the source (resolved through its [`marker::MarkerSet`]).
    Marker(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid position {input:?}: expected an offset (1200), a commit_ts (@57), an RFC 3339 time \
     (2026-11-23T12:00:00Z) or a marker (mark:NAME)"
)]
pub struct PositionParseError {
    pub input: String,
}

impl std::str::FromStr for Position {
    type Err = PositionParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let err = || PositionParseError {
            input: s.to_string(),
        };
        if let Some(ts) = t.strip_prefix('@') {
            return ts.parse().map(Position::CommitTs).map_err(|_| err());
        }
        if let Some(name) = t.strip_prefix("mark:") {
            return marker::check_name(name)
                .map(|()| Position::Marker(name.to_string()))
                .map_err(|_| err());
        }
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            return t.parse().map(Position::Offset).map_err(|_| err());
        }
        // A valid time outside what Unix nanoseconds hold is the start or the end of time:
        // `--from 1900-01-01T00:00:00Z` means from the first event.
        let dt = chrono::DateTime::parse_from_rfc3339(t).map_err(|_| err())?;
        Ok(Position::Time(match dt.timestamp_nanos_opt() {
            Some(ns) => u64::try_from(ns).unwrap_or(0),
            None if dt.timestamp() < 0 => 0,
            None => u64::MAX,
        }))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Offset(o) => write!(f, "offset {o}"),
            Position::CommitTs(t) => write!(f, "commit_ts @{t}"),
            Position::Time(ns) => write!(f, "time {}", format_time_ns(*ns)),
            Position::Marker(name) => write!(f, "mark:{name}"),
        }
    }
}

/// Where an event's wall time comes from when its source has none (Statehouse keeps no clock;
/// agents put times in their values): the first operation whose value has one of these fields
/// (a name, or a JSON pointer such as `/meta/at`), tried in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeField(pub Vec<String>);

impl TimeField {
    /// `at,asked_at,/meta/ts` as a list.
    pub fn parse(text: &str) -> Result<TimeField, String> {
        let fields: Vec<String> = text
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect();
        if fields.is_empty() {
            return Err(format!(
                "--time-field {text:?}: give a field name or JSON pointer"
            ));
        }
        Ok(TimeField(fields))
    }

    /// The event's time from its values (Unix ns), when one of the fields holds one: an
    /// RFC 3339 string, or a number of seconds, milliseconds, microseconds or nanoseconds since
    /// 1970 (told apart by size).
    pub fn time_of(&self, e: &Event) -> Option<u64> {
        self.0.iter().find_map(|field| {
            e.operations.iter().find_map(|op| {
                let obj = op.value.as_ref()?.object(&op.key).ok()?;
                let v = match field.strip_prefix('/') {
                    None => obj.get(field.as_str())?,
                    Some(path) => {
                        let mut parts = path.split('/');
                        let mut v = obj.get(parts.next()?)?;
                        for p in parts {
                            v = match v {
                                serde_json::Value::Object(m) => m.get(p)?,
                                serde_json::Value::Array(a) => a.get(p.parse::<usize>().ok()?)?,
                                _ => return None,
                            };
                        }
                        v
                    }
                };
                match v {
                    serde_json::Value::String(s) => parse_rfc3339_ns(s),
                    serde_json::Value::Number(n)
                        if n.as_u64().is_some_and(|v| v >= 100_000_000_000_000_000) =>
                    {
                        // Nanoseconds as an integer: exact (f64 would round them).
                        n.as_u64()
                    }
                    serde_json::Value::Number(n) => {
                        let x = n.as_f64()?;
                        let ns = match x {
                            x if x < 0.0 => return None,
                            x if x < 1e11 => x * 1e9,
                            x if x < 1e14 => x * 1e6,
                            x if x < 1e17 => x * 1e3,
                            x => x,
                        };
                        Some(ns as u64)
                    }
                    _ => None,
                }
            })
        })
    }

    pub fn label(&self) -> String {
        self.0.join(",")
    }
}

/// The wall clock now, Unix ns (0 if the clock is before 1970).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// RFC 3339 -> Unix ns (None if malformed or before 1970).
pub fn parse_rfc3339_ns(s: &str) -> Option<u64> {
    let dt = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    u64::try_from(dt.timestamp_nanos_opt()?).ok()
}

/// Unix ns -> RFC 3339 UTC with millisecond precision.
pub fn format_time_ns(ns: u64) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let nanos = (ns % 1_000_000_000) as u32;
    match chrono::DateTime::from_timestamp(secs, nanos) {
        Some(dt) => dt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => format!("{ns}ns"),
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Parses a 64-digit hex BLAKE3 hash.
pub fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16)?;
        let lo = (chunk[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Event {
        Event {
            offset: 7,
            txn_id: "t-7".into(),
            commit_ts: 42,
            commit_time_ns: Some(1_700_000_000_123_000_000),
            namespace: "prod".into(),
            agent_id: "planner".into(),
            operations: vec![
                Operation {
                    key: "memory/a".into(),
                    value: json!({"n": 1, "f": 1.5, "s": "x", "l": [1, {"k": null}], "b": true})
                        .as_object()
                        .cloned()
                        .map(ObjectValue::from_object),
                    version: 3,
                },
                Operation {
                    key: "plan/b".into(),
                    value: None,
                    version: 4,
                },
            ],
        }
    }

    #[test]
    fn protobuf_round_trip_keeps_integers_and_nested_lists() {
        let e = sample();
        let back = Event::decode(&e.encode().unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn direct_encoding_equals_prost_for_json_and_stored_values() {
        let e = sample();
        let prost_bytes = e.to_archived().unwrap().encode_to_vec();
        assert_eq!(e.encode().unwrap(), prost_bytes);
        // Decoded from bytes, the values stay as stored and are spliced back unchanged.
        let stored = Event::decode(&prost_bytes).unwrap();
        assert!(stored.operations[0].value.as_ref().unwrap().raw().is_some());
        assert_eq!(stored.encode().unwrap(), prost_bytes);
        // Re-numbered: only the offset differs.
        let mut moved = e.clone();
        moved.offset = 0;
        assert_eq!(
            stored.encode_at(0).unwrap(),
            moved.to_archived().unwrap().encode_to_vec()
        );
        let mut empty = e.clone();
        empty.operations[0].value = Some(ObjectValue::from_object(JsonObject::new()));
        empty.commit_time_ns = Some(0);
        assert_eq!(
            empty.encode().unwrap(),
            empty.to_archived().unwrap().encode_to_vec()
        );
    }

    #[test]
    fn stored_bytes_are_a_valid_statehouse_replay_event() {
        let e = sample();
        let bytes = e.encode().unwrap();
        let r = sh::ReplayEvent::decode(bytes.as_slice()).unwrap();
        assert_eq!(r.txn_id, "t-7");
        assert_eq!(r.commit_ts, 42);
        assert_eq!(r.operations.len(), 2);
        assert!(r.operations[1].value.is_none());
    }

    #[test]
    fn huge_integers_are_rejected_not_rounded() {
        let mut e = sample();
        e.operations[0].value = json!({"big": 9_007_199_254_740_993u64})
            .as_object()
            .cloned()
            .map(ObjectValue::from_object);
        let err = e.encode().unwrap_err();
        assert!(err.to_string().contains("memory/a"), "{err}");
    }

    #[test]
    fn json_line_has_documented_fields() {
        let line = sample().to_json_line();
        assert!(line.starts_with(r#"{"offset":7,"txn_id":"t-7","commit_ts":42,"commit_time_ns":"#));
        let mut e = sample();
        e.commit_time_ns = None;
        assert!(!e.to_json_line().contains("commit_time_ns"));
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn positions_parse() {
        assert_eq!("1200".parse::<Position>().unwrap(), Position::Offset(1200));
        assert_eq!("@57".parse::<Position>().unwrap(), Position::CommitTs(57));
        assert_eq!(
            "1970-01-01T00:00:01Z".parse::<Position>().unwrap(),
            Position::Time(1_000_000_000)
        );
        // Valid times outside Unix nanoseconds: the start and the end of time.
        assert_eq!(
            "1900-01-01T00:00:00Z".parse::<Position>().unwrap(),
            Position::Time(0)
        );
        assert_eq!(
            "9999-12-31T23:59:59Z".parse::<Position>().unwrap(),
            Position::Time(u64::MAX)
        );
        assert!("12x".parse::<Position>().is_err());
        assert!("@".parse::<Position>().is_err());
        assert!("".parse::<Position>().is_err());
    }

    #[test]
    fn hex_round_trip() {
        let h = [0xabu8; 32];
        assert_eq!(parse_hash(&hex(&h)), Some(h));
        assert_eq!(parse_hash("zz"), None);
    }
}
