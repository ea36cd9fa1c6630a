//! moto's S3 server on a free loopback port, for tests of object-storage sources. `scripts/test`
//! installs it and sets REPLAYSCOPE_REQUIRE_S3=1, so that a missing server fails instead of
//! skipping.
#![allow(dead_code)]

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use replayscope::archive::s3::S3Config;

pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts moto's S3 server on a free loopback port, or `None` (skip) when it is not installed
/// and not required.
pub fn moto() -> Option<Moto> {
    let required = std::env::var_os("REPLAYSCOPE_REQUIRE_S3").is_some();
    let available = Command::new("python3")
        .args(["-c", "import moto.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        assert!(
            !required,
            "moto is not installed (scripts/test installs it)"
        );
        eprintln!("skipping: moto (S3 test server) is not installed; run scripts/test");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto");
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(moto)
}

pub fn config(m: &Moto) -> S3Config {
    S3Config {
        endpoint: Some(m.endpoint.clone()),
        allow_http: true,
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
    }
}

/// Creates a bucket (an unsigned S3 CreateBucket: moto does not check signatures).
pub fn create_bucket(m: &Moto, bucket: &str) {
    use std::io::{Read, Write};
    let addr = m.endpoint.trim_start_matches("http://");
    let mut c = TcpStream::connect(addr).unwrap();
    write!(
        c,
        "PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "create bucket: {resp}");
}

pub fn put(m: &Moto, bucket: &str, key: &str, data: Vec<u8>) {
    let store: Arc<dyn ObjectStore> = config(m).store(bucket).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(store.put(&ObjectPath::from(key), data.into()))
        .unwrap();
}

impl Moto {
    /// The environment a `replayscope` process needs to read this server's buckets.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }
}
