//! gRPC codecs that move stored event bytes without re-encoding them.
//!
//! An archived event is stored as an encoded `replayscope.v1.ArchivedEvent`, whose fields 1–3 are
//! those of `statehouse.v1.ReplayEvent` (fields 16–19 carry offset, wall time, namespace and
//! agent, which a Statehouse client skips as unknown fields). So the server writes the stored
//! bytes as the Replay message, and splices them as the `events` of a Session `Events` frame;
//! the client side takes them back out as zero-copy slices of the received buffer.

use std::marker::PhantomData;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use prost::encoding::{encode_varint, encoded_len_varint};
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use crate::wire::proto::replayscope::v1 as pb;

/// Something a codec can write into a gRPC message.
pub trait WireEncode: Send + 'static {
    fn encode_into(self, buf: &mut EncodeBuf<'_>);
}

/// Something a codec can read from a gRPC message.
pub trait WireDecode: Sized + Send + 'static {
    fn decode_from(buf: &mut DecodeBuf<'_>) -> Result<Self, Status>;
}

macro_rules! prost_wire {
    ($($t:ty),* $(,)?) => {$(
        impl WireEncode for $t {
            fn encode_into(self, buf: &mut EncodeBuf<'_>) {
                buf.reserve(self.encoded_len());
                // Encoding into a growable buffer cannot run out of space.
                let _ = self.encode(buf);
            }
        }
        impl WireDecode for $t {
            fn decode_from(buf: &mut DecodeBuf<'_>) -> Result<Self, Status> {
                <$t>::decode(buf).map_err(|e| Status::invalid_argument(format!(
                    "malformed {} message: {e}", stringify!($t)
                )))
            }
        }
    )*};
}

prost_wire!(
    crate::wire::proto::statehouse::v1::ReplayRequest,
    pb::ClientFrame,
    pb::ServerFrame,
    pb::DescribeRequest,
    pb::ArchiveInfo,
);

/// A stored event, forwarded as it is (one gRPC message per event).
impl WireEncode for Bytes {
    fn encode_into(self, buf: &mut EncodeBuf<'_>) {
        buf.put_slice(&self);
    }
}

/// A whole message, undecoded (zero-copy).
impl WireDecode for Bytes {
    fn decode_from(buf: &mut DecodeBuf<'_>) -> Result<Self, Status> {
        Ok(buf.copy_to_bytes(buf.remaining()))
    }
}

/// What the server sends on a Session: a frame built from structs, or a batch of stored events
/// spliced in as they are.
#[derive(Debug, Clone)]
pub enum OutFrame {
    Frame(pb::ServerFrame),
    Events {
        events: Arc<dyn EventPayloads>,
        epoch: u32,
        chain: ChainHeads,
    },
}

/// The events of an `Events` frame, as each one's stored bytes. The server shares a batch it
/// also keeps (its replay ring) with the frame instead of collecting a handle per event.
pub trait EventPayloads: Send + Sync + std::fmt::Debug {
    fn count(&self) -> usize;
    fn payload(&self, i: usize) -> &[u8];

    /// Writes the whole `ServerFrame` (one dynamic call per frame: the loop over the events is
    /// compiled for each kind of batch).
    fn put_frame(&self, epoch: u32, chain: &ChainHeads, buf: &mut EncodeBuf<'_>) {
        buf.reserve(events_frame_len(self, epoch, chain));
        put_events_frame(self, epoch, chain, buf);
    }
}

impl EventPayloads for [Bytes] {
    fn count(&self) -> usize {
        self.len()
    }
    fn payload(&self, i: usize) -> &[u8] {
        &self[i]
    }
}

impl EventPayloads for Vec<Bytes> {
    fn count(&self) -> usize {
        self.len()
    }
    fn payload(&self, i: usize) -> &[u8] {
        &self[i]
    }
}

fn payloads<P: EventPayloads + ?Sized>(events: &P) -> impl Iterator<Item = &[u8]> {
    (0..events.count()).map(|i| events.payload(i))
}

/// The hash-chain heads before and after a batch of events, where the server knows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChainHeads {
    pub before: Option<[u8; 32]>,
    pub after: Option<[u8; 32]>,
}

const SERVER_FRAME_EVENTS: u8 = (2 << 3) | 2;
const EVENTS_EVENT: u8 = (1 << 3) | 2;
const EVENTS_EPOCH: u8 = 2 << 3;
const EVENTS_CHAIN_BEFORE: u8 = (3 << 3) | 2;
const EVENTS_CHAIN_AFTER: u8 = (4 << 3) | 2;

/// The encoded length of an `Events` message holding these events.
fn events_len<P: EventPayloads + ?Sized>(events: &P, epoch: u32, chain: &ChainHeads) -> usize {
    let mut n: usize = payloads(events)
        .map(|e| 1 + encoded_len_varint(e.len() as u64) + e.len())
        .sum();
    if epoch != 0 {
        n += 1 + encoded_len_varint(u64::from(epoch));
    }
    n += (usize::from(chain.before.is_some()) + usize::from(chain.after.is_some())) * (2 + 32);
    n
}

fn events_frame_len<P: EventPayloads + ?Sized>(
    events: &P,
    epoch: u32,
    chain: &ChainHeads,
) -> usize {
    let inner = events_len(events, epoch, chain);
    1 + encoded_len_varint(inner as u64) + inner
}

/// Writes a `ServerFrame{events: Events{events, epoch, chain_before, chain_after}}` with the
/// stored event bytes spliced in.
pub fn put_events_frame<P: EventPayloads + ?Sized, B: BufMut>(
    events: &P,
    epoch: u32,
    chain: &ChainHeads,
    buf: &mut B,
) {
    buf.put_u8(SERVER_FRAME_EVENTS);
    encode_varint(events_len(events, epoch, chain) as u64, buf);
    for e in payloads(events) {
        buf.put_u8(EVENTS_EVENT);
        encode_varint(e.len() as u64, buf);
        buf.put_slice(e);
    }
    if epoch != 0 {
        buf.put_u8(EVENTS_EPOCH);
        encode_varint(u64::from(epoch), buf);
    }
    for (tag, head) in [
        (EVENTS_CHAIN_BEFORE, chain.before),
        (EVENTS_CHAIN_AFTER, chain.after),
    ] {
        if let Some(h) = head {
            buf.put_u8(tag);
            buf.put_u8(32);
            buf.put_slice(&h);
        }
    }
}

impl WireEncode for OutFrame {
    fn encode_into(self, buf: &mut EncodeBuf<'_>) {
        match self {
            OutFrame::Frame(f) => f.encode_into(buf),
            OutFrame::Events {
                events,
                epoch,
                chain,
            } => {
                events.put_frame(epoch, &chain, buf);
            }
        }
    }
}

/// What a client receives on a Session: `Events` frames as raw event bytes, the rest decoded.
#[derive(Debug, Clone)]
pub enum InFrame {
    Frame(pb::ServerFrame),
    Events {
        events: Vec<Bytes>,
        epoch: u32,
        /// The chain heads the server sent with the batch.
        chain: ChainHeads,
    },
}

impl WireDecode for InFrame {
    fn decode_from(buf: &mut DecodeBuf<'_>) -> Result<Self, Status> {
        let msg = buf.copy_to_bytes(buf.remaining());
        decode_in_frame(msg)
    }
}

fn malformed(what: &str) -> Status {
    Status::internal(format!("malformed ServerFrame from the server: {what}"))
}

/// Splits an encoded `ServerFrame` holding `Events` into the stored event bytes (zero-copy);
/// any other frame is decoded with prost.
pub fn decode_in_frame(msg: Bytes) -> Result<InFrame, Status> {
    if msg.first() != Some(&SERVER_FRAME_EVENTS) {
        return pb::ServerFrame::decode(msg)
            .map(InFrame::Frame)
            .map_err(|e| malformed(&e.to_string()));
    }
    let mut b = msg.clone();
    b.advance(1);
    let len = prost::encoding::decode_varint(&mut b).map_err(|e| malformed(&e.to_string()))?;
    if len as usize != b.remaining() {
        // Not the single-field layout this codec writes: take the general path.
        return pb::ServerFrame::decode(msg)
            .map(InFrame::Frame)
            .map_err(|e| malformed(&e.to_string()));
    }
    let mut events = Vec::new();
    let mut epoch = 0u32;
    let mut chain = ChainHeads::default();
    while b.has_remaining() {
        let key = prost::encoding::decode_varint(&mut b).map_err(|e| malformed(&e.to_string()))?;
        match key {
            k if k == u64::from(EVENTS_EVENT) => {
                let n = prost::encoding::decode_varint(&mut b)
                    .map_err(|e| malformed(&e.to_string()))? as usize;
                if n > b.remaining() {
                    return Err(malformed("event longer than the frame"));
                }
                events.push(b.split_to(n));
            }
            k if k == u64::from(EVENTS_EPOCH) => {
                epoch = prost::encoding::decode_varint(&mut b)
                    .map_err(|e| malformed(&e.to_string()))? as u32;
            }
            k if k == u64::from(EVENTS_CHAIN_BEFORE) || k == u64::from(EVENTS_CHAIN_AFTER) => {
                let n = prost::encoding::decode_varint(&mut b)
                    .map_err(|e| malformed(&e.to_string()))? as usize;
                // Empty: absent (another encoder may write the default).
                if n == 0 {
                    continue;
                }
                if n != 32 || b.remaining() < 32 {
                    return Err(malformed("a chain head is not 32 bytes"));
                }
                let mut h = [0u8; 32];
                b.copy_to_slice(&mut h);
                if k == u64::from(EVENTS_CHAIN_BEFORE) {
                    chain.before = Some(h);
                } else {
                    chain.after = Some(h);
                }
            }
            _ => {
                return pb::ServerFrame::decode(msg)
                    .map(InFrame::Frame)
                    .map_err(|e| malformed(&e.to_string()));
            }
        }
    }
    Ok(InFrame::Events {
        events,
        epoch,
        chain,
    })
}

/// A codec that encodes `E` and decodes `D` with the traits above.
pub struct WireCodec<E, D>(PhantomData<fn(E, D)>);

impl<E, D> Default for WireCodec<E, D> {
    fn default() -> Self {
        WireCodec(PhantomData)
    }
}

/// Encoder buffers: start at 64 KiB and hand a frame to HTTP/2 every 64 KiB, so one small
/// event per message does not mean one write per event.
fn buffer_settings() -> BufferSettings {
    BufferSettings::new(64 * 1024, 64 * 1024)
}

pub struct WireEncoder<E>(PhantomData<fn(E)>);
pub struct WireDecoder<D>(PhantomData<fn(D)>);

impl<E: WireEncode> Encoder for WireEncoder<E> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode_into(dst);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffer_settings()
    }
}

impl<D: WireDecode> Decoder for WireDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        D::decode_from(src).map(Some)
    }
}

impl<E: WireEncode, D: WireDecode> Codec for WireCodec<E, D> {
    type Encode = E;
    type Decode = D;
    type Encoder = WireEncoder<E>;
    type Decoder = WireDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        WireEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        WireDecoder(PhantomData)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(frame: OutFrame) -> Bytes {
        match frame {
            OutFrame::Frame(f) => f.encode_to_vec().into(),
            OutFrame::Events {
                events,
                epoch,
                chain,
            } => {
                let mut b = bytes::BytesMut::new();
                put_events_frame(&*events, epoch, &chain, &mut b);
                assert_eq!(b.len(), events_frame_len(&*events, epoch, &chain));
                b.freeze()
            }
        }
    }

    fn archived(offset: u64) -> Bytes {
        pb::ArchivedEvent {
            txn_id: format!("t{offset}"),
            commit_ts: offset + 10,
            operations: vec![],
            offset,
            commit_time_ns: None,
            namespace: "ns".into(),
            agent_id: "a".into(),
        }
        .encode_to_vec()
        .into()
    }

    #[test]
    fn spliced_events_decode_with_prost_and_back_to_raw() {
        let events: Vec<Bytes> = (0..3).map(archived).collect();
        let wire = encode(OutFrame::Events {
            events: Arc::new(events.clone()),
            epoch: 2,
            chain: ChainHeads {
                before: Some([7; 32]),
                after: Some([8; 32]),
            },
        });
        let frame = pb::ServerFrame::decode(wire.clone()).unwrap();
        let Some(pb::server_frame::Frame::Events(ev)) = frame.frame else {
            panic!("not an Events frame: {frame:?}");
        };
        assert_eq!(ev.epoch, 2);
        assert_eq!(ev.chain_before, vec![7; 32]);
        assert_eq!(ev.chain_after, vec![8; 32]);
        assert_eq!(ev.events.len(), 3);
        assert_eq!(ev.events[2].offset, 2);
        match decode_in_frame(wire).unwrap() {
            InFrame::Events {
                events: got,
                epoch,
                chain,
            } => {
                assert_eq!(got, events);
                assert_eq!(epoch, 2);
                assert_eq!(chain.before, Some([7; 32]));
                assert_eq!(chain.after, Some([8; 32]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_frames_and_prost_encoded_events_decode_too() {
        let hb = pb::ServerFrame {
            frame: Some(pb::server_frame::Frame::Heartbeat(pb::ServerHeartbeat {
                server_time_ns: 5,
                head_offset: 9,
            })),
        };
        assert!(matches!(
            decode_in_frame(encode(OutFrame::Frame(hb))).unwrap(),
            InFrame::Frame(pb::ServerFrame {
                frame: Some(pb::server_frame::Frame::Heartbeat(_))
            })
        ));
        let empty = encode(OutFrame::Events {
            events: Arc::new(Vec::<Bytes>::new()),
            epoch: 0,
            chain: ChainHeads::default(),
        });
        assert!(matches!(
            decode_in_frame(empty).unwrap(),
            InFrame::Events { events, epoch: 0, chain } if events.is_empty() && chain == ChainHeads::default()
        ));
        assert!(decode_in_frame(Bytes::from_static(&[0x12, 0x05, 0x0a, 0x09, 1])).is_err());
    }
}
