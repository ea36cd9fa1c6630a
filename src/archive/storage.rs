//! Positional reads over the bytes of one archive file.
//!
//! The reader asks for byte ranges (the footer, the summary, one chunk) instead of memory-mapping
//! the file: the crate forbids `unsafe` (which `mmap` needs), a mapped file that is truncated
//! underneath the reader kills the process with SIGBUS instead of giving an error, and the same
//! interface serves ranged GETs against object storage.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Something that can return byte ranges of one archive file.
pub trait RangeRead: Send + Sync {
    /// Total size in bytes.
    fn size(&self) -> u64;
    /// Exactly `len` bytes starting at `offset` (an error if the range passes the end).
    fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// How users name this file in messages (a path or a URL).
    fn name(&self) -> &str;
}

/// A local file read with `pread`.
pub struct LocalFile {
    file: File,
    size: u64,
    name: String,
}

/// Refuses a special file (a FIFO, a device, a socket) before it is opened: opening or reading
/// one can block forever or never end. A missing file passes (the open then says so).
pub fn check_not_special(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let t = meta.file_type();
    let kind = if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        return Ok(());
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is {kind}, not a regular file"),
    ))
}

/// Whether `path` is missing or a regular file: only then may a command write a file next to it
/// and rename it into place, or remove it after a failure (`-o /dev/null` stays a device).
/// A symbolic link is written through, not replaced.
pub fn is_regular_or_absent(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(m) => m.is_file(),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// Removes a partial output a failed command wrote, if it is a regular file.
pub fn remove_partial(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => std::fs::remove_file(path),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A whole small file (a config, token, certificate), refusing special files.
/// Writes `bytes` to `path` through a temporary file beside it, moved over it at the end: a
/// reader sees the old file or the new one, never a part (the temporary file is removed on
/// failure).
pub fn write_replacing(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = path.with_file_name(format!(
        ".{}.partial-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&temp, bytes)
        .and_then(|()| std::fs::rename(&temp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&temp);
        })
}

pub fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    check_not_special(path)?;
    std::fs::read(path)
}

/// [`read_regular`] as UTF-8 text.
pub fn read_regular_text(path: &Path) -> io::Result<String> {
    String::from_utf8(read_regular(path)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "is not UTF-8 text"))
}

impl LocalFile {
    pub fn open(path: &Path) -> io::Result<LocalFile> {
        check_not_special(path)?;
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(io::Error::other("is a directory"));
        }
        Ok(LocalFile {
            file,
            size: meta.len(),
            name: path.display().to_string(),
        })
    }
}

impl RangeRead for LocalFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|end| end > self.size) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "range {offset}+{len} is past the end of the file ({} bytes)",
                    self.size
                ),
            ));
        }
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// Bytes in memory (the sample archive built into the binary).
pub struct MemoryFile {
    data: &'static [u8],
    name: String,
}

impl MemoryFile {
    pub fn new(data: &'static [u8], name: &str) -> MemoryFile {
        MemoryFile {
            data,
            name: name.to_string(),
        }
    }
}

impl RangeRead for MemoryFile {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        usize::try_from(offset)
            .ok()
            .and_then(|o| self.data.get(o..o.checked_add(len)?))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "range {offset}+{len} is past the end ({} bytes)",
                        self.data.len()
                    ),
                )
            })
    }

    fn name(&self) -> &str {
        &self.name
    }
}
