//! A key's value: a JSON object kept as its stored `google.protobuf.Struct` bytes and decoded on
//! first use. Replaying, forwarding, folding state and comparing offsets never need the JSON, so
//! the player only pays for decoding where something looks at a value (the TUI's detail pane, a
//! JSON Lines writer, the state hash).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{JsonObject, ValueError};

struct Cell {
    /// Encoded `google.protobuf.Struct`, when the value came from protobuf.
    raw: Option<Bytes>,
    decoded: OnceLock<Result<JsonObject, ValueError>>,
}

/// A JSON object value, cheap to clone (shared).
#[derive(Clone)]
pub struct ObjectValue(Arc<Cell>);

impl ObjectValue {
    pub fn from_object(obj: JsonObject) -> ObjectValue {
        let decoded = OnceLock::new();
        let _ = decoded.set(Ok(obj));
        ObjectValue(Arc::new(Cell { raw: None, decoded }))
    }

    /// A value from encoded `google.protobuf.Struct` bytes (decoded later, on use).
    pub fn from_struct_bytes(raw: Bytes) -> ObjectValue {
        ObjectValue(Arc::new(Cell {
            raw: Some(raw),
            decoded: OnceLock::new(),
        }))
    }

    /// The JSON object (decoding it the first time). `key` names the key in errors.
    pub fn object(&self, key: &str) -> Result<&JsonObject, ValueError> {
        let cell = &self.0;
        cell.decoded
            .get_or_init(|| match &cell.raw {
                Some(raw) => super::wire::decode_struct_bytes(raw, key),
                None => Ok(JsonObject::new()),
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The same value without ties to a larger buffer: a value decoded from an archive chunk
    /// shares that chunk's buffer, and keeping it (in the materialized state, for hours) would
    /// keep the whole chunk alive. Values already owned are returned as they are.
    pub fn detached(&self) -> ObjectValue {
        match &self.0.raw {
            Some(raw) => ObjectValue::from_struct_bytes(Bytes::copy_from_slice(raw)),
            None => self.clone(),
        }
    }

    /// The stored protobuf bytes, when the value came from protobuf.
    pub fn raw(&self) -> Option<&Bytes> {
        self.0.raw.as_ref()
    }

    /// Whether the JSON text could contain `needle`, judged from the stored strings without
    /// building the object (see [`super::wire::strings_could_contain`]); true when unsure.
    pub fn strings_could_contain(&self, needle: &memchr::memmem::Finder<'_>) -> bool {
        match &self.0.raw {
            Some(raw) if self.0.decoded.get().is_none() => {
                super::wire::strings_could_contain(raw, needle).unwrap_or(true)
            }
            _ => true,
        }
    }

    /// Compact JSON text (or an explanation when the bytes do not decode).
    pub fn to_json_string(&self, key: &str) -> String {
        match self.object(key) {
            Ok(o) => serde_json::to_string(o).unwrap_or_default(),
            Err(e) => format!("<undecodable value: {e}>"),
        }
    }
}

impl PartialEq for ObjectValue {
    fn eq(&self, other: &Self) -> bool {
        if Arc::ptr_eq(&self.0, &other.0) {
            return true;
        }
        match (self.object(""), other.object("")) {
            (Ok(a), Ok(b)) => a == b,
            _ => self.0.raw == other.0.raw,
        }
    }
}

impl std::fmt::Debug for ObjectValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.object("") {
            Ok(o) => o.fmt(f),
            Err(e) => write!(f, "<undecodable: {e}>"),
        }
    }
}

impl Serialize for ObjectValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.object("") {
            Ok(o) => o.serialize(s),
            Err(e) => Err(serde::ser::Error::custom(e)),
        }
    }
}

impl<'de> Deserialize<'de> for ObjectValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        JsonObject::deserialize(d).map(ObjectValue::from_object)
    }
}
