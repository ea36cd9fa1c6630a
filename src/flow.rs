//! Flow control (DESIGN.md section 5), on tokio primitives: the credit window between a producer
//! and its consumer, the replay ring of recently sent batches, and the idle watchdog. The same
//! types serve the server side of a session and the client side between a source and the player,
//! so the gauges mean the same thing for local archives and remote endpoints.

pub mod credit;
pub mod ring;
pub mod watchdog;

pub use credit::{CreditSnapshot, CreditWindow, FlowError};
pub use ring::{ReplayRing, RingError, RingItem, RingSnapshot};
pub use watchdog::{Watchdog, WatchedSession};

/// Default credit window and ring capacity.
pub const DEFAULT_WINDOW_BYTES: u64 = 64 * 1024 * 1024;
pub const DEFAULT_RING_BYTES: u64 = 64 * 1024 * 1024;
/// Backpressure is signalled at or above this share of the window in flight.
pub const BACKPRESSURE_PCT: u64 = 80;
