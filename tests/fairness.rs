//! A server that stalled clients cannot lock: raw HTTP/2 clients (a helper that writes the
//! frames itself) that open a Session or a Replay and then never open their flow-control window
//! — answering PING, or ignoring it — hold every `--max-sessions` slot; a normal client is still
//! served within the idle timeout plus a second, for Session and for Replay. One connection that
//! opens more than its share is refused with RESOURCE_EXHAUSTED while others are served.

use std::time::{Duration, Instant};

use prost::Message as _;
use replayscope::server::{Rpc, ServeOptions};
use replayscope::wire::client::Client;
use replayscope::wire::codec::InFrame;
use replayscope::wire::proto::replayscope::v1 as pb;
use replayscope::wire::proto::statehouse::v1 as sh;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

#[path = "support/test_server.rs"]
mod test_server;
use test_server::{TestServer, big_archive};

/// Long enough that 64 stalled streams (each opening a reader over an archive bigger than every
/// buffer between server and client) all hold their slots at once, even in a debug build on two
/// busy cores.
const IDLE: Duration = Duration::from_secs(5);
const STALLERS: usize = 64;

const FRAME_DATA: u8 = 0x0;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK literal header field without indexing, no Huffman (names and values < 127 bytes).
fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
}

/// How a stalled client treats the server's PINGs.
#[derive(Clone, Copy)]
enum Pings {
    Answered,
    Ignored,
}

/// Opens one gRPC call on a new connection with a stream window of 0 (the server can send
/// headers, never data), sends `message` and then only answers SETTINGS (and PING, if told).
/// Returns when the call is open; the connection lives in a task until the test ends.
async fn stall(addr: std::net::SocketAddr, path: &str, message: Vec<u8>, end: bool, pings: Pings) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let mut settings = SETTINGS_INITIAL_WINDOW_SIZE.to_be_bytes().to_vec();
    settings.extend_from_slice(&0u32.to_be_bytes());
    out.extend(frame(FRAME_SETTINGS, 0, 0, &settings));
    let mut headers = Vec::new();
    literal(&mut headers, ":method", "POST");
    literal(&mut headers, ":scheme", "http");
    literal(&mut headers, ":path", path);
    literal(&mut headers, ":authority", &addr.to_string());
    literal(&mut headers, "content-type", "application/grpc");
    literal(&mut headers, "te", "trailers");
    out.extend(frame(FRAME_HEADERS, FLAG_END_HEADERS, 1, &headers));
    let mut data = vec![0u8];
    data.extend_from_slice(&(message.len() as u32).to_be_bytes());
    data.extend_from_slice(&message);
    let flags = if end { FLAG_END_STREAM } else { 0 };
    out.extend(frame(FRAME_DATA, flags, 1, &data));
    tcp.write_all(&out).await.unwrap();
    tokio::spawn(async move {
        let mut head = [0u8; 9];
        loop {
            if tcp.read_exact(&mut head).await.is_err() {
                return;
            }
            let len =
                (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
            let mut payload = vec![0u8; len];
            if tcp.read_exact(&mut payload).await.is_err() {
                return;
            }
            let reply = match (head[3], head[4] & FLAG_ACK, pings) {
                (FRAME_SETTINGS, 0, _) => frame(FRAME_SETTINGS, FLAG_ACK, 0, &[]),
                (FRAME_PING, 0, Pings::Answered) => frame(FRAME_PING, FLAG_ACK, 0, &payload),
                _ => continue,
            };
            if tcp.write_all(&reply).await.is_err() {
                return;
            }
        }
    });
}

fn open_frame() -> Vec<u8> {
    pb::ClientFrame {
        frame: Some(pb::client_frame::Frame::Open(pb::Open::default())),
    }
    .encode_to_vec()
}

fn replay_request() -> Vec<u8> {
    let (namespace, agent_id) = agent();
    sh::ReplayRequest {
        namespace,
        agent_id,
        start_ts: None,
        end_ts: None,
    }
    .encode_to_vec()
}

/// The big archive's first agent.
fn agent() -> (String, String) {
    let a = test_server::open(&big_archive());
    let c = &a.channels()[0];
    (c.namespace.clone(), c.agent_id.clone())
}

async fn start() -> TestServer {
    TestServer::start(
        &big_archive(),
        ServeOptions {
            idle: IDLE,
            max_sessions: STALLERS as u64,
            ..ServeOptions::default()
        },
    )
    .await
}

/// Waits (bounded) until the server's count of active `rpc` streams satisfies `done`.
async fn active(server: &TestServer, rpc: Rpc, what: &str, done: impl Fn(u64) -> bool) {
    let deadline = Instant::now() + IDLE * 3;
    while !done(server.metrics.active(rpc)) {
        let n = server.metrics.active(rpc);
        assert!(
            Instant::now() < deadline,
            "{what}: {n} active {rpc:?} streams"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Tries `call` until it is served (not RESOURCE_EXHAUSTED); returns how long that took.
async fn served_after<F, Fut>(mut call: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let t0 = Instant::now();
    let mut refused = 0;
    loop {
        match call().await {
            Ok(()) => return t0.elapsed(),
            Err(s) if s.code() == Code::ResourceExhausted => refused += 1,
            Err(s) => panic!("unexpected {s:?}"),
        }
        assert!(
            t0.elapsed() < IDLE * 5,
            "still refused after {refused} tries"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Both kinds in one test, one after the other: 128 stalled streams at once on two cores would
/// measure the machine, not the server.
/// The tests of this file one at a time: the stalled-client test times the watchdog against
/// the idle timeout, and the bandwidth test beside it would take the machine's two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_do_not_lock_out_a_normal_client() {
    let _alone = ONE_AT_A_TIME.lock().await;
    stalled_sessions().await;
    stalled_replays().await;
}

async fn stalled_sessions() {
    let server = start().await;
    for i in 0..STALLERS {
        let pings = if i % 2 == 0 {
            Pings::Answered
        } else {
            Pings::Ignored
        };
        stall(
            server.addr,
            "/replayscope.v1.ReplayService/Session",
            open_frame(),
            false,
            pings,
        )
        .await;
    }
    let all = STALLERS as u64;
    active(&server, Rpc::Session, "the stallers admitted", |n| n >= all).await;
    let admitted = Instant::now();
    let client = server.client().await;
    // Served = admitted: the Session's first frame is Opened, not RESOURCE_EXHAUSTED (how fast
    // its events then come is the machine's, not the slot's).
    let served = std::sync::Arc::new(std::sync::Mutex::new(None));
    let waited = served_after(|| {
        let (client, served) = (client.clone(), served.clone());
        async move {
            let mut s = client.session(pb::Open::default()).await?;
            match s.next().await? {
                Some(InFrame::Frame(pb::ServerFrame {
                    frame: Some(pb::server_frame::Frame::Opened(_)),
                })) => {
                    *served.lock().unwrap() = Some(s);
                    Ok(())
                }
                other => Err(tonic::Status::unknown(format!("not Opened: {other:?}"))),
            }
        }
    })
    .await;
    let since_admitted = admitted.elapsed();
    // And its events flow.
    let mut s = served.lock().unwrap().take().expect("the served session");
    loop {
        match s.next().await.unwrap() {
            Some(InFrame::Events { events, .. }) if !events.is_empty() => break,
            Some(_) => {}
            None => panic!("the served session ended without events"),
        }
    }
    eprintln!(
        "Session: served {since_admitted:?} after {STALLERS} stalled sessions took every slot"
    );
    assert!(
        since_admitted <= IDLE + Duration::from_secs(1),
        "served {since_admitted:?} after the stalled sessions took every slot (waited {waited:?})"
    );
    // Every stalled slot is freed by the watchdog while the stalled peers are still there.
    active(&server, Rpc::Session, "the stallers released", |n| n == 0).await;
    assert!(
        server.metrics.sessions_reaped() >= all,
        "{} reaped",
        server.metrics.sessions_reaped()
    );
    server.shutdown().await;
}

async fn stalled_replays() {
    let server = start().await;
    let request = replay_request();
    for i in 0..STALLERS {
        let pings = if i % 2 == 0 {
            Pings::Answered
        } else {
            Pings::Ignored
        };
        stall(
            server.addr,
            "/statehouse.v1.StatehouseService/Replay",
            request.clone(),
            true,
            pings,
        )
        .await;
    }
    let all = STALLERS as u64;
    active(&server, Rpc::Replay, "the stallers admitted", |n| n >= all).await;
    let admitted = Instant::now();
    let client = server.client().await;
    let (namespace, agent_id) = agent();
    // Served = admitted: the Replay call is answered with a stream, not RESOURCE_EXHAUSTED.
    let served = std::sync::Arc::new(std::sync::Mutex::new(None));
    let waited = served_after(|| {
        let (client, namespace, agent_id) = (client.clone(), namespace.clone(), agent_id.clone());
        let served = served.clone();
        async move {
            let s = client
                .replay_raw(sh::ReplayRequest {
                    namespace,
                    agent_id,
                    start_ts: None,
                    end_ts: None,
                })
                .await?;
            *served.lock().unwrap() = Some(s);
            Ok(())
        }
    })
    .await;
    let since_admitted = admitted.elapsed();
    // And its events flow.
    let mut s = served.lock().unwrap().take().expect("the served replay");
    assert!(
        s.message().await.unwrap().is_some(),
        "the served replay has events"
    );
    eprintln!("Replay: served {since_admitted:?} after {STALLERS} stalled replays took every slot");
    assert!(
        since_admitted <= IDLE + Duration::from_secs(1),
        "served {since_admitted:?} after the stalled replays took every slot (waited {waited:?})"
    );
    active(&server, Rpc::Replay, "the stallers released", |n| n == 0).await;
    server.shutdown().await;
}

/// `f`, failing the test with `what` if it takes longer than the idle timeout.
async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(IDLE, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: nothing within {IDLE:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_gets_its_share_and_others_are_still_served() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = TestServer::start(
        &big_archive(),
        ServeOptions {
            max_sessions: 64,
            max_connection_streams: 4,
            ..ServeOptions::default()
        },
    )
    .await;
    let greedy = server.client().await;
    // The held sessions are never read after Opened: each gets a small credit window so that
    // together they cannot fill the connection's HTTP/2 window (8 MiB) and starve the next
    // stream's Opened on the same connection. Every await is bounded: a stuck step fails here.
    let held_open = pb::Open {
        window_bytes: 64 * 1024,
        ..pb::Open::default()
    };
    let mut held = Vec::new();
    for i in 0..4 {
        let mut s = bounded(
            &format!("session {i} opened"),
            greedy.session(held_open.clone()),
        )
        .await
        .unwrap();
        assert!(
            matches!(
                bounded(&format!("session {i}'s first frame"), s.next()).await,
                Ok(Some(InFrame::Frame(_)))
            ),
            "Opened"
        );
        held.push(s);
    }
    let refused = bounded("the fifth session", async {
        let mut s = greedy.session(held_open.clone()).await?;
        s.next().await.map(|_| ())
    })
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("--max-connection-streams"),
        "{}",
        refused.message()
    );
    // Another connection is served meanwhile.
    let other = server.client().await;
    let mut s = bounded(
        "another connection's session",
        other.session(pb::Open::default()),
    )
    .await
    .unwrap();
    assert!(matches!(
        bounded("another connection's first frame", s.next()).await,
        Ok(Some(InFrame::Frame(_)))
    ));
    drop(held);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_messages_echo_a_bounded_prefix_of_client_input() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = start().await;
    let client: Client = server.client().await;
    let huge = "n".repeat(1 << 20);
    let err = async {
        let mut s = client
            .session(pb::Open {
                namespace: huge.clone(),
                agent_id: "a".into(),
                ..Default::default()
            })
            .await?;
        s.next().await.map(|_| ())
    }
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().len() < 2048, "{} bytes", err.message().len());
    assert!(
        err.message().contains("… (1048576 bytes)"),
        "{}",
        err.message()
    );
    server.shutdown().await;
}
