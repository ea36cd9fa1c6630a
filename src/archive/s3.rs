//! Archives in S3-compatible object storage: `s3://bucket/key.mcap` (one archive) or
//! `s3://bucket/prefix` (a segment prefix, listed in offset order with the same checks as a
//! directory). Reads are ranged GETs through the same [`RangeRead`] interface as local files:
//! opening fetches the footer, summary and index, a seek or a read fetches only the chunks it
//! needs. Credentials and endpoint come from the standard AWS environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` / `AWS_DEFAULT_REGION`,
//! `AWS_ENDPOINT_URL` for an S3-compatible server, `AWS_ALLOW_HTTP=true` for a plain-HTTP one).
//!
//! The reader is synchronous (it runs on read-ahead threads and inside stream polls); requests go
//! to the background runtime of [`crate::background_runtime`], and the caller waits for the answer like it
//! would for a `pread`.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, RetryConfig};

use crate::archive::reader::{Archive, OpenOptions, Segment, open_segment};
use crate::archive::segments::segment_offset;
use crate::archive::storage::RangeRead;
use crate::archive::{ArchiveError, Result};

/// Requests and bytes fetched from object storage (for `info` and the tests' bounds).
#[derive(Debug, Default)]
pub struct FetchStats {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl FetchStats {
    pub fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Relaxed)
    }
}

use crate::background_runtime::block_on;

/// `s3://bucket/key` split into bucket and key (the key may be empty).
pub fn parse_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then(|| (bucket.to_string(), key.trim_start_matches('/').to_string()))
}

/// Settings on top of the AWS environment variables (tests and embedders; the CLI uses the
/// environment alone).
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    pub endpoint: Option<String>,
    pub allow_http: bool,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl S3Config {
    fn builder(&self, bucket: &str) -> AmazonS3Builder {
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(e) = &self.endpoint {
            b = b.with_endpoint(e);
        }
        if self.allow_http {
            b = b.with_allow_http(true);
        }
        if let Some(r) = &self.region {
            b = b.with_region(r);
        }
        if let Some(k) = &self.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &self.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        b
    }

    /// The object store of `bucket` with these settings.
    pub fn store(&self, bucket: &str) -> std::result::Result<Arc<dyn ObjectStore>, String> {
        self.builder(bucket)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(15),
                ..RetryConfig::default()
            })
            .build()
            .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            .map_err(|e| crate::error_line::one_line(&e))
    }
}

fn store_for(bucket: &str, url: &str, config: &S3Config) -> Result<Arc<dyn ObjectStore>> {
    config
        .store(bucket)
        .map_err(|message| ArchiveError::Invalid {
            path: url.to_string(),
            message: format!("object storage setup failed: {message}"),
        })
}

/// An object-store error as an archive error naming the URL.
fn object_error(url: &str, e: &object_store::Error) -> ArchiveError {
    match e {
        object_store::Error::NotFound { .. } => ArchiveError::NotFound {
            path: url.to_string(),
        },
        e => ArchiveError::Io {
            path: url.to_string(),
            source: io::Error::other(crate::error_line::one_line(e)),
        },
    }
}

/// One object, read with ranged GETs.
pub struct ObjectFile {
    store: Arc<dyn ObjectStore>,
    location: ObjectPath,
    size: u64,
    name: String,
    stats: Arc<FetchStats>,
    /// Small blocks already fetched (the file's head and tail), see [`ObjectFile::block_for`].
    blocks: std::sync::Mutex<Vec<(Range<u64>, Bytes)>>,
}

/// Opening reads a dozen small records at the start (magic, header) and the end (footer,
/// summary, index attachment, metadata) of a file: fetch those regions in one GET each.
const HEAD_BLOCK: u64 = 4 * 1024;
const TAIL_BLOCK: u64 = 64 * 1024;

impl ObjectFile {
    fn new(
        store: Arc<dyn ObjectStore>,
        location: ObjectPath,
        size: u64,
        name: String,
        stats: Arc<FetchStats>,
    ) -> ObjectFile {
        ObjectFile {
            store,
            location,
            size,
            name,
            stats,
            blocks: Default::default(),
        }
    }

    /// The range to fetch for a read of `offset..end`: small reads near the head or the tail of
    /// the file take the whole head or tail block; everything else is fetched as asked.
    fn block_for(&self, offset: u64, end: u64) -> (Range<u64>, bool) {
        let tail_start = self.size.saturating_sub(TAIL_BLOCK);
        if end - offset <= TAIL_BLOCK / 4 {
            if offset >= tail_start {
                return (tail_start..self.size, true);
            }
            if end <= HEAD_BLOCK.min(self.size) {
                return (0..HEAD_BLOCK.min(self.size), true);
            }
        }
        (offset..end, false)
    }
}

impl RangeRead for ObjectFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let end = offset
            .checked_add(len as u64)
            .filter(|&e| e <= self.size)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "range {offset}+{len} is past the end of the object ({} bytes)",
                        self.size
                    ),
                )
            })?;
        if len == 0 {
            return Ok(Vec::new());
        }
        {
            let blocks = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((r, b)) = blocks
                .iter()
                .find(|(r, _)| r.start <= offset && end <= r.end)
            {
                let from = (offset - r.start) as usize;
                return Ok(b[from..from + len].to_vec());
            }
        }
        let (range, keep) = self.block_for(offset, end);
        let (store, location) = (self.store.clone(), self.location.clone());
        let fetch = range.clone();
        let got = block_on(async move { store.get_range(&location, fetch).await })?
            .map_err(|e| io::Error::other(crate::error_line::one_line(&e)))?;
        self.stats.requests.fetch_add(1, Relaxed);
        self.stats.bytes.fetch_add(got.len() as u64, Relaxed);
        if got.len() as u64 != range.end - range.start {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "asked for bytes {}..{}, the server sent {}",
                    range.start,
                    range.end,
                    got.len()
                ),
            ));
        }
        let from = (offset - range.start) as usize;
        let out = got[from..from + len].to_vec();
        if keep {
            let mut blocks = self.blocks.lock().unwrap_or_else(|p| p.into_inner());
            // At most the head and the tail block (a concurrent miss may have added it).
            if !blocks.iter().any(|(r, _)| *r == range) {
                blocks.push((range, got));
            }
        }
        Ok(out)
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// Opens `s3://bucket/key.mcap` or a segment prefix `s3://bucket/prefix`.
pub fn open(url: &str, options: OpenOptions) -> Result<Archive> {
    open_with(url, options, &S3Config::default()).map(|(a, _)| a)
}

/// [`open`] with settings beyond the environment, also returning the fetch counters.
pub fn open_with(
    url: &str,
    options: OpenOptions,
    config: &S3Config,
) -> Result<(Archive, Arc<FetchStats>)> {
    let (bucket, key) = parse_url(url).ok_or_else(|| ArchiveError::Invalid {
        path: url.to_string(),
        message: "expected s3://bucket/key.mcap or s3://bucket/prefix".to_string(),
    })?;
    let store = store_for(&bucket, url, config)?;
    let stats = Arc::new(FetchStats::default());
    // A single object when the key names one.
    if !key.is_empty() && !key.ends_with('/') {
        let location = ObjectPath::from(key.as_str());
        let head = {
            let (store, location) = (store.clone(), location.clone());
            block_on(async move { store.head(&location).await })
                .map_err(|e| ArchiveError::io(url, e))?
        };
        stats.requests.fetch_add(1, Relaxed);
        match head {
            Ok(meta) => {
                let file =
                    ObjectFile::new(store, location, meta.size, url.to_string(), stats.clone());
                let segment = open_segment(Box::new(file), options)?;
                return Ok((
                    Archive::from_segments(url.to_string(), vec![segment])?,
                    stats,
                ));
            }
            Err(object_store::Error::NotFound { .. }) if !key.ends_with(".mcap") => {}
            Err(e) => return Err(object_error(url, &e)),
        }
    }
    // A prefix of segments.
    let prefix = key.trim_end_matches('/').to_string();
    let listed = {
        let store = store.clone();
        let prefix = (!prefix.is_empty()).then(|| ObjectPath::from(prefix.as_str()));
        block_on(async move {
            store
                .list(prefix.as_ref())
                .collect::<Vec<object_store::Result<object_store::ObjectMeta>>>()
                .await
        })
        .map_err(|e| ArchiveError::io(url, e))?
    };
    stats.requests.fetch_add(1, Relaxed);
    let mut files = Vec::new();
    let mut others = Vec::new();
    for item in listed {
        let meta = item.map_err(|e| object_error(url, &e))?;
        let file_name = meta.location.filename().unwrap_or_default().to_string();
        // Only direct children of the prefix.
        let parent_len = meta.location.as_ref().len() - file_name.len();
        let parent = meta.location.as_ref()[..parent_len].trim_end_matches('/');
        if parent != prefix {
            continue;
        }
        match segment_offset(&file_name) {
            Some(offset) => files.push((offset, meta)),
            None => others.push(file_name),
        }
    }
    if files.is_empty() {
        return Err(if others.is_empty() {
            ArchiveError::NotFound {
                path: url.to_string(),
            }
        } else {
            ArchiveError::Invalid {
                path: url.to_string(),
                message: format!(
                    "no segment objects (NNNNNNNNNNNNNNNNNNNN.mcap) under this prefix; it holds {}",
                    others.join(", ")
                ),
            }
        });
    }
    files.sort_by_key(|(o, _)| *o);
    let last = files.len() - 1;
    let mut segments: Vec<Segment> = Vec::with_capacity(files.len());
    for (i, (offset, meta)) in files.into_iter().enumerate() {
        let name = format!("s3://{bucket}/{}", meta.location);
        let file = ObjectFile::new(
            store.clone(),
            meta.location,
            meta.size,
            name.clone(),
            stats.clone(),
        );
        let opts = OpenOptions {
            allow_truncated: options.allow_truncated && i == last,
        };
        let segment = open_segment(Box::new(file), opts)?;
        if let Some(first) = segment.first_offset()
            && first != offset
        {
            return Err(ArchiveError::Invalid {
                path: name,
                message: format!(
                    "segment name says first offset {offset}, its first event is offset {first}"
                ),
            });
        }
        segments.push(segment);
    }
    Ok((Archive::from_segments(url.to_string(), segments)?, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("s3://b/k/x.mcap"),
            Some(("b".into(), "k/x.mcap".into()))
        );
        assert_eq!(parse_url("s3://b"), Some(("b".into(), "".into())));
        assert_eq!(parse_url("s3://b/"), Some(("b".into(), "".into())));
        assert_eq!(parse_url("s3:///k"), None);
        assert_eq!(parse_url("http://b/k"), None);
    }
}
