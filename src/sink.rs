//! Where played events go when nobody is looking at them: a stream of JSON Lines or text
//! (`play --output`). Later: an archive and a Statehouse daemon.

pub mod stream;

pub use stream::{OutputFormat, StreamSink};
