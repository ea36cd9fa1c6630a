//! The archive hash chain: `h_i = BLAKE3(h_{i-1} || payload_i)`, `h_{-1}` = 32 zero bytes (or the
//! previous segment's final hash). `payload_i` is the stored `ArchivedEvent` bytes of event i.

/// The running hash of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashChain {
    head: [u8; 32],
}

pub const ZERO_HASH: [u8; 32] = [0u8; 32];

impl HashChain {
    pub fn new() -> HashChain {
        HashChain { head: ZERO_HASH }
    }

    /// Continues a chain whose last hash was `head`.
    pub fn starting_at(head: [u8; 32]) -> HashChain {
        HashChain { head }
    }

    pub fn push(&mut self, payload: &[u8]) {
        let mut h = blake3::Hasher::new();
        h.update(&self.head);
        h.update(payload);
        self.head = *h.finalize().as_bytes();
    }

    pub fn head(&self) -> [u8; 32] {
        self.head
    }
}

impl Default for HashChain {
    fn default() -> Self {
        HashChain::new()
    }
}

/// The hash of one chunk's events (format version 2, recorded in the index): BLAKE3 over each
/// stored event's length (u64, little-endian) and bytes, in the chunk's order. A one-agent read,
/// which skips other agents' chunks and so cannot run the chain, checks each chunk it reads
/// against it. The bytes are gathered and hashed at once: BLAKE3 then hashes many of its 1 KiB
/// blocks in parallel (SIMD), several times faster than fed one ~300-byte event at a time.
#[derive(Default)]
pub struct ChunkHasher {
    bytes: Vec<u8>,
}

impl ChunkHasher {
    pub fn with_capacity(bytes: usize) -> ChunkHasher {
        ChunkHasher {
            bytes: Vec::with_capacity(bytes),
        }
    }

    pub fn push(&mut self, payload: &[u8]) {
        self.bytes
            .extend_from_slice(&(payload.len() as u64).to_le_bytes());
        self.bytes.extend_from_slice(payload);
    }

    pub fn finish(&self) -> [u8; 32] {
        *blake3::hash(&self.bytes).as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_depends_on_order_and_start() {
        let mut a = HashChain::new();
        a.push(b"x");
        a.push(b"y");
        let mut b = HashChain::new();
        b.push(b"y");
        b.push(b"x");
        assert_ne!(a.head(), b.head());
        let mut c = HashChain::new();
        c.push(b"x");
        let mut d = HashChain::starting_at(c.head());
        d.push(b"y");
        assert_eq!(d.head(), a.head());
        // h_0 = BLAKE3(zeros || payload)
        let mut e = HashChain::new();
        e.push(b"x");
        let mut manual = blake3::Hasher::new();
        manual.update(&[0u8; 32]);
        manual.update(b"x");
        assert_eq!(e.head(), *manual.finalize().as_bytes());
    }

    #[test]
    fn a_chunk_hash_is_blake3_over_lengths_and_bytes() {
        let mut h = ChunkHasher::default();
        h.push(b"ab");
        h.push(b"");
        h.push(b"xyz");
        let mut flat = Vec::new();
        for p in [&b"ab"[..], b"", b"xyz"] {
            flat.extend_from_slice(&(p.len() as u64).to_le_bytes());
            flat.extend_from_slice(p);
        }
        assert_eq!(h.finish(), *blake3::hash(&flat).as_bytes());
    }
}
