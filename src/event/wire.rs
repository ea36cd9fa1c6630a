//! A direct decoder from encoded `ArchivedEvent` bytes to [`Event`], building the JSON values
//! without the intermediate `prost_types::Struct` maps (half the allocations of the generic
//! path). It follows protobuf semantics: unknown fields are skipped, a repeated scalar or oneof
//! keeps the last value, map entries with a repeated key keep the last one. Nesting deeper than
//! [`MAX_DEPTH`] is an error, so hostile input cannot exhaust the stack.

use serde_json::{Map, Value};

use std::sync::Arc;

use bytes::Bytes;
use memchr::memmem::Finder;

use super::{Event, JsonObject, ObjectValue, Operation, ValueError, f64_to_json};

/// Decodes an encoded `google.protobuf.Struct` into a JSON object.
pub fn decode_struct_bytes(b: &[u8], key: &str) -> Result<JsonObject, ValueError> {
    decode_struct(b, key, 0)
}

/// Whether the JSON text of an encoded `google.protobuf.Struct` could contain `needle`, judged
/// from its strings alone (every key and string value, without building the object): false
/// means it cannot, for a needle that only a string token can hold (see
/// `inspect::search`). A string JSON would escape counts as a candidate; the caller confirms
/// candidates on the JSON text.
///
/// Only the structure is checked: a value this walk rejects (false) but that would not decode
/// (a string not UTF-8, a number JSON has no form for) has no JSON text to match either.
pub fn strings_could_contain(b: &[u8], needle: &Finder<'_>) -> Result<bool, ValueError> {
    struct_strings(b, needle, 0)
}

fn string_could_contain(s: &[u8], needle: &Finder<'_>) -> bool {
    needle.find(s).is_some() || s.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\')
}

fn struct_strings(b: &[u8], needle: &Finder<'_>, depth: u32) -> Result<bool, ValueError> {
    if depth > MAX_DEPTH {
        return Err(err("value nested too deeply"));
    }
    let mut r = Reader::new(b);
    while !r.done() {
        let (field, wire) = r.key()?;
        if field != 1 {
            r.skip(wire)?;
            continue;
        }
        r.expect(wire, 2)?;
        let mut entry = Reader::new(r.bytes()?);
        while !entry.done() {
            let (f, w) = entry.key()?;
            let hit = match f {
                1 => {
                    entry.expect(w, 2)?;
                    string_could_contain(entry.bytes()?, needle)
                }
                2 => {
                    entry.expect(w, 2)?;
                    value_strings(entry.bytes()?, needle, depth + 1)?
                }
                _ => {
                    entry.skip(w)?;
                    false
                }
            };
            if hit {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn value_strings(b: &[u8], needle: &Finder<'_>, depth: u32) -> Result<bool, ValueError> {
    if depth > MAX_DEPTH {
        return Err(err("value nested too deeply"));
    }
    let mut r = Reader::new(b);
    while !r.done() {
        let (field, wire) = r.key()?;
        let hit = match field {
            1 | 4 => {
                r.expect(wire, 0)?;
                r.varint()?;
                false
            }
            2 => {
                r.expect(wire, 1)?;
                r.fixed64()?;
                false
            }
            3 => {
                r.expect(wire, 2)?;
                string_could_contain(r.bytes()?, needle)
            }
            5 => {
                r.expect(wire, 2)?;
                struct_strings(r.bytes()?, needle, depth + 1)?
            }
            6 => {
                r.expect(wire, 2)?;
                let mut list = Reader::new(r.bytes()?);
                let mut hit = false;
                while !hit && !list.done() {
                    let (f, w) = list.key()?;
                    if f == 1 {
                        list.expect(w, 2)?;
                        hit = value_strings(list.bytes()?, needle, depth + 1)?;
                    } else {
                        list.skip(w)?;
                    }
                }
                hit
            }
            _ => {
                r.skip(wire)?;
                false
            }
        };
        if hit {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Same recursion limit as prost.
pub const MAX_DEPTH: u32 = 100;

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

fn err(what: &str) -> ValueError {
    ValueError::Decode(what.to_string())
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Self {
        Reader { b, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.b.len()
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, ValueError> {
        // Fast path: most keys and lengths fit in one byte.
        if let Some(&b) = self.b.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.varint_slow()
    }

    #[cold]
    fn varint_slow(&mut self) -> Result<u64, ValueError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .b
                .get(self.pos)
                .ok_or_else(|| err("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(err("varint longer than 10 bytes"))
    }

    /// `(field number, wire type)`.
    fn key(&mut self) -> Result<(u64, u8), ValueError> {
        let k = self.varint()?;
        let field = k >> 3;
        if field == 0 {
            return Err(err("field number 0"));
        }
        Ok((field, (k & 7) as u8))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ValueError> {
        let len = usize::try_from(self.varint()?).map_err(|_| err("length overflow"))?;
        let end = self
            .pos
            .checked_add(len)
            .ok_or_else(|| err("length overflow"))?;
        let s = self
            .b
            .get(self.pos..end)
            .ok_or_else(|| err("length runs past the end"))?;
        self.pos = end;
        Ok(s)
    }

    fn str(&mut self) -> Result<&'a str, ValueError> {
        let b = self.bytes()?;
        simdutf8::basic::from_utf8(b).map_err(|_| err("string is not UTF-8"))
    }

    fn string(&mut self) -> Result<String, ValueError> {
        let b = self.bytes()?;
        simdutf8::basic::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| err("string is not UTF-8"))
    }

    fn fixed64(&mut self) -> Result<u64, ValueError> {
        let end = self.pos + 8;
        let s = self
            .b
            .get(self.pos..end)
            .ok_or_else(|| err("truncated fixed64"))?;
        self.pos = end;
        Ok(u64::from_le_bytes(
            s.try_into().map_err(|_| err("fixed64"))?,
        ))
    }

    fn skip(&mut self, wire: u8) -> Result<(), ValueError> {
        match wire {
            0 => {
                self.varint()?;
            }
            1 => {
                self.fixed64()?;
            }
            2 => {
                self.bytes()?;
            }
            5 => {
                let end = self.pos + 4;
                if end > self.b.len() {
                    return Err(err("truncated fixed32"));
                }
                self.pos = end;
            }
            _ => return Err(err("unsupported wire type")),
        }
        Ok(())
    }

    fn expect(&self, wire: u8, want: u8) -> Result<(), ValueError> {
        if wire == want {
            Ok(())
        } else {
            Err(err("wrong wire type for field"))
        }
    }
}

/// Namespace and agent strings seen recently, so that the events of a channel share one
/// allocation (and a state keyed by them compares pointers first).
#[derive(Debug, Default)]
pub struct NameCache {
    names: Vec<(Box<[u8]>, Arc<str>)>,
}

/// Distinct names kept; past that the cache starts over.
const NAME_CACHE: usize = 64;

impl NameCache {
    fn get(&mut self, b: &[u8]) -> Result<Arc<str>, ValueError> {
        if let Some((_, s)) = self.names.iter().find(|(k, _)| **k == *b) {
            return Ok(s.clone());
        }
        let s: Arc<str> =
            Arc::from(std::str::from_utf8(b).map_err(|_| err("string is not UTF-8"))?);
        if self.names.len() >= NAME_CACHE {
            self.names.clear();
        }
        self.names.push((b.into(), s.clone()));
        Ok(s)
    }
}

/// Decodes an encoded `ArchivedEvent`. Values are kept as slices of `b` and decoded on use.
pub fn decode_event(b: &Bytes, names: &mut NameCache) -> Result<Event, ValueError> {
    let mut r = Reader::new(b);
    let mut e = Event {
        offset: 0,
        txn_id: String::new(),
        commit_ts: 0,
        commit_time_ns: None,
        namespace: Arc::from(""),
        agent_id: Arc::from(""),
        operations: Vec::new(),
    };
    while !r.done() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect(wire, 2)?;
                e.txn_id = r.string()?;
            }
            2 => {
                r.expect(wire, 0)?;
                e.commit_ts = r.varint()?;
            }
            3 => {
                r.expect(wire, 2)?;
                let op = r.bytes()?;
                e.operations.push(decode_operation(b, op)?);
            }
            16 => {
                r.expect(wire, 0)?;
                e.offset = r.varint()?;
            }
            17 => {
                r.expect(wire, 0)?;
                e.commit_time_ns = Some(r.varint()?);
            }
            18 => {
                r.expect(wire, 2)?;
                e.namespace = names.get(r.bytes()?)?;
            }
            19 => {
                r.expect(wire, 2)?;
                e.agent_id = names.get(r.bytes()?)?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(e)
}

fn decode_operation(whole: &Bytes, b: &[u8]) -> Result<Operation, ValueError> {
    let mut r = Reader::new(b);
    let mut key: Arc<str> = Arc::from("");
    let mut value: Option<&[u8]> = None;
    let mut version = 0;
    while !r.done() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect(wire, 2)?;
                key = Arc::from(r.str()?);
            }
            2 => {
                r.expect(wire, 2)?;
                value = Some(r.bytes()?);
            }
            3 => {
                r.expect(wire, 0)?;
                version = r.varint()?;
            }
            _ => r.skip(wire)?,
        }
    }
    let value = value.map(|v| ObjectValue::from_struct_bytes(whole.slice_ref(v)));
    Ok(Operation {
        key,
        value,
        version,
    })
}

fn decode_struct(b: &[u8], key: &str, depth: u32) -> Result<JsonObject, ValueError> {
    if depth > MAX_DEPTH {
        return Err(err("value nested too deeply"));
    }
    let mut r = Reader::new(b);
    let mut map = Map::new();
    while !r.done() {
        let (field, wire) = r.key()?;
        if field != 1 {
            r.skip(wire)?;
            continue;
        }
        r.expect(wire, 2)?;
        let mut entry = Reader::new(r.bytes()?);
        let mut k = String::new();
        let mut v = Value::Null;
        while !entry.done() {
            let (f, w) = entry.key()?;
            match f {
                1 => {
                    entry.expect(w, 2)?;
                    k = entry.string()?;
                }
                2 => {
                    entry.expect(w, 2)?;
                    v = decode_value(entry.bytes()?, key, depth + 1)?;
                }
                _ => entry.skip(w)?,
            }
        }
        map.insert(k, v);
    }
    Ok(map)
}

fn decode_value(b: &[u8], key: &str, depth: u32) -> Result<Value, ValueError> {
    if depth > MAX_DEPTH {
        return Err(err("value nested too deeply"));
    }
    let mut r = Reader::new(b);
    let mut v = Value::Null;
    while !r.done() {
        let (field, wire) = r.key()?;
        v = match field {
            1 => {
                r.expect(wire, 0)?;
                r.varint()?;
                Value::Null
            }
            2 => {
                r.expect(wire, 1)?;
                f64_to_json(f64::from_bits(r.fixed64()?), key)?
            }
            3 => {
                r.expect(wire, 2)?;
                Value::String(r.string()?)
            }
            4 => {
                r.expect(wire, 0)?;
                Value::Bool(r.varint()? != 0)
            }
            5 => {
                r.expect(wire, 2)?;
                Value::Object(decode_struct(r.bytes()?, key, depth + 1)?)
            }
            6 => {
                r.expect(wire, 2)?;
                let mut list = Reader::new(r.bytes()?);
                let mut items = Vec::new();
                while !list.done() {
                    let (f, w) = list.key()?;
                    if f == 1 {
                        list.expect(w, 2)?;
                        items.push(decode_value(list.bytes()?, key, depth + 1)?);
                    } else {
                        list.skip(w)?;
                    }
                }
                Value::Array(items)
            }
            _ => {
                r.skip(wire)?;
                continue;
            }
        };
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::generate::{GenOptions, Generator};
    use prost::Message as _;

    #[test]
    fn agrees_with_the_prost_path_on_generated_events() {
        for e in Generator::new(GenOptions::default()).take(2000) {
            let bytes = e.encode().unwrap();
            let direct =
                decode_event(&Bytes::from(bytes.clone()), &mut NameCache::default()).unwrap();
            direct.check_values().unwrap();
            let via_prost = Event::from_archived(
                crate::wire::proto::replayscope::v1::ArchivedEvent::decode(bytes.as_slice())
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(direct, via_prost);
            assert_eq!(direct, e);
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // value = Struct{ "a": Value{ struct_value: Struct{ "a": … } } } nested 2_000 times.
        let mut inner: Vec<u8> = Vec::new();
        for _ in 0..2_000 {
            let mut value = vec![(5 << 3) | 2];
            prost::encoding::encode_varint(inner.len() as u64, &mut value);
            value.extend_from_slice(&inner);
            let mut entry = vec![(1 << 3) | 2, 1, b'a', (2 << 3) | 2];
            prost::encoding::encode_varint(value.len() as u64, &mut entry);
            entry.extend_from_slice(&value);
            let mut s = vec![(1 << 3) | 2];
            prost::encoding::encode_varint(entry.len() as u64, &mut s);
            s.extend_from_slice(&entry);
            inner = s;
        }
        assert!(decode_struct(&inner, "k", 0).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Event::decode(&[0x0a, 0xff]).is_err());
        assert!(Event::decode(&[0x07]).is_err());
        assert!(Event::decode(&[0x0a, 0x02, 0xff, 0xfe]).is_err());
        // a value that is not a valid Struct fails when it is used, naming the key
        let op = [0x0a, 0x01, b'k', 0x12, 0x02, 0x0a, 0xff];
        let mut ev = vec![0x1a, op.len() as u8];
        ev.extend_from_slice(&op);
        let e = Event::decode(&ev).unwrap();
        let err = e.check_values().unwrap_err().to_string();
        assert!(err.contains("decode"), "{err}");
    }
}
