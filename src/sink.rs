//! Where played events go when nobody is looking at them: a stream of JSON Lines or text
//! (`play --output`), a new archive (`play --into out.mcap`) or a Statehouse daemon
//! (`play --into statehouse://…`).

pub mod archive;
pub mod statehouse;
pub mod stream;

pub use archive::{ArchiveOutput, ArchiveSink};
pub use statehouse::{AgentMap, StatehouseSink, StatehouseTarget};
pub use stream::{OutputFormat, StreamSink};
