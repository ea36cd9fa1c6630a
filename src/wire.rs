//! The gRPC plumbing shared by the server and the remote sources: the generated protos, the
//! pass-through codecs that move stored event bytes without re-encoding them, the clients of
//! both protocols (replayscope.v1 and statehouse.v1), and the one reconnect state machine.
//! This is the only module that knows tonic's codec and channel types; `server/` and `source/`
//! both sit on it and never import each other.

pub mod client;
pub mod codec;
pub mod proto;
pub mod reconnect;

pub use client::{Client, ClientError, ConnectOptions, SessionStream};
pub use reconnect::{Reconnect, RetryPolicy};
