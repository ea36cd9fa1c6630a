//! Reads the few scalar fields of an encoded `ArchivedEvent` that the reader needs for seeking
//! and checking (offset, commit_ts, commit_time_ns) without decoding the operations.

/// Scalar fields of an `ArchivedEvent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventHead {
    pub offset: u64,
    pub commit_ts: u64,
    pub commit_time_ns: Option<u64>,
}

fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// `None` if the bytes are not a well-formed protobuf message.
pub fn event_head(b: &[u8]) -> Option<EventHead> {
    let mut head = EventHead::default();
    let mut pos = 0;
    while pos < b.len() {
        let key = varint(b, &mut pos)?;
        let field = key >> 3;
        match key & 7 {
            0 => {
                let v = varint(b, &mut pos)?;
                match field {
                    2 => head.commit_ts = v,
                    16 => head.offset = v,
                    17 => head.commit_time_ns = Some(v),
                    _ => {}
                }
            }
            1 => pos = pos.checked_add(8)?,
            2 => {
                let len = usize::try_from(varint(b, &mut pos)?).ok()?;
                pos = pos.checked_add(len)?;
            }
            5 => pos = pos.checked_add(4)?,
            _ => return None,
        }
        if field == 0 || pos > b.len() {
            return None;
        }
    }
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Operation};

    #[test]
    fn reads_the_scalars_of_an_encoded_event() {
        let e = Event {
            offset: 300,
            txn_id: "x".into(),
            commit_ts: 1 << 40,
            commit_time_ns: Some(17),
            namespace: "n".into(),
            agent_id: "a".into(),
            operations: vec![Operation {
                key: "k".into(),
                value: serde_json::json!({"a": 1.5})
                    .as_object()
                    .cloned()
                    .map(crate::event::ObjectValue::from_object),
                version: 1,
            }],
        };
        let bytes = e.encode().unwrap();
        assert_eq!(
            event_head(&bytes),
            Some(EventHead {
                offset: 300,
                commit_ts: 1 << 40,
                commit_time_ns: Some(17)
            })
        );
        assert_eq!(event_head(&bytes[..bytes.len() - 1]), None);
        // offset 0 is not encoded in proto3 and reads back as 0
        let zero = Event { offset: 0, ..e };
        assert_eq!(event_head(&zero.encode().unwrap()).unwrap().offset, 0);
    }
}
