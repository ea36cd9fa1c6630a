//! `replayscope serve` end to end: a real server on 127.0.0.1:0 and real gRPC clients (the
//! generated prost client, the pass-through client, tonic-health and reflection clients).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use replayscope::archive::integrity::HashChain;
use replayscope::event::hex;
use replayscope::server::{Metrics, Rpc, ServeOptions, Token};
use replayscope::wire::client::{Client, ConnectOptions, SessionStream};
use replayscope::wire::codec::InFrame;
use replayscope::wire::proto::replayscope::v1 as pb;
use replayscope::wire::proto::statehouse::v1 as sh;
use tonic::Code;

#[path = "support/test_server.rs"]
mod test_server;
use test_server::{TestServer, big_archive, open};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sample.mcap");

/// Every stored event: (offset, channel index, payload).
fn stored(path: &Path) -> Vec<(u64, usize, Bytes)> {
    let a = open(path);
    let mut c = a.cursor().unwrap();
    let mut out = vec![];
    while let Some(r) = c.next_raw() {
        let r = r.unwrap();
        out.push((r.offset, r.channel, r.payload));
    }
    out
}

/// Waits (bounded) until `cond` holds; the server's state changes asynchronously.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn channel_of(path: &Path, i: usize) -> (String, String) {
    let a = open(path);
    let c = &a.channels()[i];
    (c.namespace.clone(), c.agent_id.clone())
}

async fn replay_all(client: &Client, req: sh::ReplayRequest) -> Result<Vec<Bytes>, tonic::Status> {
    let mut s = client.replay_raw(req).await?;
    let mut out = vec![];
    while let Some(m) = s.message().await? {
        out.push(m);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statehouse_replay_streams_each_agent_as_stored_and_decodes_as_replay_event() {
    let server = TestServer::start(Path::new(SAMPLE), ServeOptions::default()).await;
    let client = server.client().await;
    let all = stored(Path::new(SAMPLE));
    let channels = open(Path::new(SAMPLE)).channels().len();
    let mut total = 0;
    for ch in 0..channels {
        let (namespace, agent_id) = channel_of(Path::new(SAMPLE), ch);
        let got = replay_all(
            &client,
            sh::ReplayRequest {
                namespace: namespace.clone(),
                agent_id: agent_id.clone(),
                start_ts: None,
                end_ts: None,
            },
        )
        .await
        .unwrap();
        let want: Vec<Bytes> = all
            .iter()
            .filter(|(_, c, _)| *c == ch)
            .map(|(_, _, p)| p.clone())
            .collect();
        assert_eq!(got.len(), want.len(), "{namespace}/{agent_id}");
        assert!(
            got == want,
            "{namespace}/{agent_id}: bytes differ from the archive"
        );
        total += got.len();
    }
    assert_eq!(total, all.len());

    // The generated Statehouse client (prost) reads the same stream as ReplayEvents.
    let (namespace, agent_id) = channel_of(Path::new(SAMPLE), 0);
    let mut typed = sh::statehouse_service_client::StatehouseServiceClient::new(client.channel());
    let mut stream = typed
        .replay(sh::ReplayRequest {
            namespace,
            agent_id,
            start_ts: None,
            end_ts: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    let want: Vec<&Bytes> = all
        .iter()
        .filter(|(_, c, _)| *c == 0)
        .map(|(_, _, p)| p)
        .collect();
    while let Some(ev) = stream.message().await.unwrap() {
        assert_eq!(ev, sh::ReplayEvent::decode(want[n].clone()).unwrap());
        assert!(!ev.operations.is_empty());
        n += 1;
    }
    assert_eq!(n, want.len());
    assert_eq!(server.metrics.events_sent(Rpc::Replay) as usize, total + n);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statehouse_replay_start_and_end_are_inclusive() {
    let server = TestServer::start(Path::new(SAMPLE), ServeOptions::default()).await;
    let client = server.client().await;
    let (namespace, agent_id) = channel_of(Path::new(SAMPLE), 1);
    let req = |start_ts, end_ts| sh::ReplayRequest {
        namespace: namespace.clone(),
        agent_id: agent_id.clone(),
        start_ts,
        end_ts,
    };
    let full: Vec<u64> = replay_all(&client, req(None, None))
        .await
        .unwrap()
        .iter()
        .map(|b| sh::ReplayEvent::decode(b.clone()).unwrap().commit_ts)
        .collect();
    assert!(full.len() > 20);
    let (lo, hi) = (full[5], full[15]);
    let part: Vec<u64> = replay_all(&client, req(Some(lo), Some(hi)))
        .await
        .unwrap()
        .iter()
        .map(|b| sh::ReplayEvent::decode(b.clone()).unwrap().commit_ts)
        .collect();
    assert_eq!(part, full[5..=15].to_vec());
    // Between two of this agent's commits: starts at the next one.
    let part: Vec<u64> = replay_all(&client, req(Some(lo + 1), Some(hi)))
        .await
        .unwrap()
        .iter()
        .map(|b| sh::ReplayEvent::decode(b.clone()).unwrap().commit_ts)
        .collect();
    assert_eq!(part.first(), full.get(6));
    // start > end, and start past the end: empty, as the daemon answers.
    assert!(
        replay_all(&client, req(Some(hi), Some(lo)))
            .await
            .unwrap()
            .is_empty()
    );
    let last = *full.last().unwrap();
    assert!(
        replay_all(&client, req(Some(last + 1_000_000), None))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        replay_all(&client, req(Some(last), None))
            .await
            .unwrap()
            .len(),
        1
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_agent_and_write_rpcs_get_clear_statuses() {
    let server = TestServer::start(Path::new(SAMPLE), ServeOptions::default()).await;
    let client = server.client().await;
    let err = replay_all(
        &client,
        sh::ReplayRequest {
            namespace: "nope".into(),
            agent_id: "ghost".into(),
            start_ts: None,
            end_ts: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let (ns, agent) = channel_of(Path::new(SAMPLE), 0);
    assert!(
        err.message().contains(&format!("{ns}/{agent}")),
        "lists the agents that exist: {}",
        err.message()
    );
    let mut typed = sh::statehouse_service_client::StatehouseServiceClient::new(client.channel());
    let err = typed
        .begin_transaction(sh::BeginTransactionRequest { timeout_ms: None })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(err.message().contains("read-only"), "{}", err.message());
    assert!(
        err.message().contains("BeginTransaction"),
        "{}",
        err.message()
    );
    assert_eq!(server.metrics.errors(Code::NotFound), 1);
    server.shutdown().await;
}

/// Reads a whole session, acking every batch; returns the events and the End report.
async fn drain(s: &mut SessionStream) -> (Vec<Bytes>, pb::Report) {
    let mut events = vec![];
    loop {
        match s.next().await.unwrap().expect("stream ends with End") {
            InFrame::Events {
                events: batch,
                epoch,
                ..
            } => {
                let last = pb::ArchivedEvent::decode(batch.last().unwrap().clone())
                    .unwrap()
                    .offset;
                events.extend(batch);
                s.ack(last, epoch).await;
            }
            InFrame::Frame(pb::ServerFrame {
                frame: Some(pb::server_frame::Frame::End(end)),
            }) => return (events, end.report.unwrap()),
            InFrame::Frame(_) => {}
        }
    }
}

async fn opened(s: &mut SessionStream) -> pb::Opened {
    match s.next().await.unwrap().unwrap() {
        InFrame::Frame(pb::ServerFrame {
            frame: Some(pb::server_frame::Frame::Opened(o)),
        }) => o,
        other => panic!("expected Opened first, got {other:?}"),
    }
}

fn offset_of(b: &Bytes) -> u64 {
    pb::ArchivedEvent::decode(b.clone()).unwrap().offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_replays_the_whole_archive_with_the_same_hash() {
    let path = big_archive();
    let server = TestServer::start(&path, ServeOptions::default()).await;
    let client = server.client().await;
    let describe = client.describe().await.unwrap();
    assert_eq!(describe.events, 60_000);
    let mut s = client
        .session(pb::Open {
            window_bytes: 1 << 20,
            ..Default::default()
        })
        .await
        .unwrap();
    let o = opened(&mut s).await;
    assert_eq!(o.window_bytes, 1 << 20);
    assert_eq!(o.archive.unwrap().final_hash, describe.final_hash);
    let (events, report) = drain(&mut s).await;
    let want = stored(&path);
    assert_eq!(events.len(), want.len());
    let mut chain = HashChain::new();
    for (got, (offset, _, payload)) in events.iter().zip(&want) {
        assert_eq!(got, payload, "offset {offset}");
        chain.push(got);
    }
    assert_eq!(hex(&chain.head()), describe.final_hash);
    assert_eq!(report.final_hash, describe.final_hash);
    assert_eq!(report.events_sent, 60_000);
    assert_eq!(
        (report.first_offset, report.last_offset),
        (Some(0), Some(59_999))
    );
    eventually("the session is no longer active", || {
        server.metrics.active(Rpc::Session) == 0
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_filters_by_agent_range_and_key_prefix() {
    let server = TestServer::start(Path::new(SAMPLE), ServeOptions::default()).await;
    let client = server.client().await;
    let all = stored(Path::new(SAMPLE));
    let (namespace, agent_id) = channel_of(Path::new(SAMPLE), 2);
    let at = |o| {
        Some(pb::Position {
            at: Some(pb::position::At::Offset(o)),
        })
    };
    let mut s = client
        .session(pb::Open {
            namespace,
            agent_id,
            from: at(1000),
            until: at(3000),
            ..Default::default()
        })
        .await
        .unwrap();
    opened(&mut s).await;
    let (events, report) = drain(&mut s).await;
    let want: Vec<Bytes> = all
        .iter()
        .filter(|(o, c, _)| *c == 2 && (1000..=3000).contains(o))
        .map(|(_, _, p)| p.clone())
        .collect();
    assert!(!want.is_empty());
    assert!(events == want);
    assert_eq!(report.events_sent as usize, want.len());

    // A key prefix: every event touches a matching key.
    let first = replayscope::event::wire::decode_event(&all[0].2, &mut Default::default()).unwrap();
    let prefix: String = first.operations[0].key.chars().take(3).collect();
    let mut s = client
        .session(pb::Open {
            filter: Some(pb::Filter {
                key_prefix: prefix.clone(),
                txn_id: String::new(),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    opened(&mut s).await;
    let (events, _) = drain(&mut s).await;
    assert!(!events.is_empty() && events.len() < all.len());
    for e in &events {
        let ev = pb::ArchivedEvent::decode(e.clone()).unwrap();
        assert!(ev.operations.iter().any(|op| op.key.starts_with(&prefix)));
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_open_errors_name_what_is_wrong() {
    let server = TestServer::start(
        Path::new(SAMPLE),
        ServeOptions {
            max_window_bytes: 1 << 20,
            ..ServeOptions::default()
        },
    )
    .await;
    let client = server.client().await;
    let first_status = |open: pb::Open| {
        let client = client.clone();
        async move {
            let mut s = client.session(open).await?;
            s.next().await.map(|_| ())
        }
    };
    let e = first_status(pb::Open {
        namespace: "x".into(),
        agent_id: "y".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("the archive holds"), "{}", e.message());
    let e = first_status(pb::Open {
        from: Some(pb::Position {
            at: Some(pb::position::At::Offset(999_999)),
        }),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange);
    assert!(
        e.message().contains("0 to 5999"),
        "names the range: {}",
        e.message()
    );
    let e = first_status(pb::Open {
        window_bytes: 2 << 20,
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("1048576"), "{}", e.message());
    let e = first_status(pb::Open {
        namespace: "only-namespace".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // A bad seek target is an Error frame naming the range; the session goes on.
    let mut s = client.session(pb::Open::default()).await.unwrap();
    opened(&mut s).await;
    s.send(pb::client_frame::Frame::Pause(pb::Pause {})).await;
    s.send(pb::client_frame::Frame::Seek(pb::Seek {
        to: Some(pb::Position {
            at: Some(pb::position::At::Offset(6000)),
        }),
    }))
    .await;
    loop {
        match s.next().await.unwrap().unwrap() {
            InFrame::Frame(pb::ServerFrame {
                frame: Some(pb::server_frame::Frame::Error(e)),
            }) => {
                assert_eq!(e.code, "OUT_OF_RANGE");
                assert!(e.message.contains("0 to 5999"), "{}", e.message);
                break;
            }
            _ => continue,
        }
    }
    s.send(pb::client_frame::Frame::Resume(pb::ResumeStream {}))
        .await;
    let (events, _) = drain(&mut s).await;
    assert!(!events.is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_holds_the_server_at_its_window() {
    let path = big_archive();
    let server = TestServer::start(
        &path,
        ServeOptions {
            batch_bytes: 16 * 1024,
            ..ServeOptions::default()
        },
    )
    .await;
    let client = server.client().await;
    let window = 256 * 1024;
    let mut s = client
        .session(pb::Open {
            window_bytes: window,
            ..Default::default()
        })
        .await
        .unwrap();
    opened(&mut s).await;
    // Never ack, never read: the producer must stop at the window.
    eventually("the session waits for credit", || {
        server.metrics.totals().waiting_for_credit == 1
    })
    .await;
    let sent_bytes_bound = window + 16 * 1024 + 2048;
    let in_flight = server.metrics.totals().in_flight_bytes;
    assert!(
        in_flight <= sent_bytes_bound,
        "in flight {in_flight} > window {window} + one batch"
    );
    let sent = server.metrics.events_sent(Rpc::Session);
    assert!(
        sent > 0 && sent < 2_000,
        "{sent} events sent on a {window}-byte window"
    );
    assert!(
        server
            .metrics
            .render(None)
            .contains("replayscope_sessions_waiting_for_credit 1")
    );

    // Acknowledging what arrived (64 KiB of it, more than a batch) lets it go on.
    let (mut received, mut last) = (0, 0);
    while received < 64 * 1024 {
        if let InFrame::Events { events, .. } = s.next().await.unwrap().unwrap() {
            received += events.iter().map(|e| e.len()).sum::<usize>();
            last = offset_of(events.last().unwrap());
        }
    }
    s.ack(last, 0).await;
    eventually("more events are sent after an ack", || {
        server.metrics.events_sent(Rpc::Session) > sent
    })
    .await;
    drop(s);
    server.shutdown().await;
}

/// Reads events until `n` have arrived (acking each batch); returns them.
async fn take_events(s: &mut SessionStream, n: usize) -> Vec<Bytes> {
    let mut got = vec![];
    while got.len() < n {
        if let InFrame::Events { events, epoch, .. } = s.next().await.unwrap().unwrap() {
            let last = offset_of(events.last().unwrap());
            got.extend(events);
            s.ack(last, epoch).await;
        }
    }
    got
}

async fn resume_after_cut(ring_bytes: u64) -> (Vec<Bytes>, Arc<Metrics>) {
    let path = big_archive();
    let server = TestServer::start(
        &path,
        ServeOptions {
            ring_bytes,
            batch_events: 500,
            ..ServeOptions::default()
        },
    )
    .await;
    let client = server.client().await;
    let mut s = client
        .session(pb::Open {
            window_bytes: 512 * 1024,
            ..Default::default()
        })
        .await
        .unwrap();
    let id = opened(&mut s).await.session_id;
    let mut got = take_events(&mut s, 5_000).await;
    // Keep only a prefix, as if the rest were lost in the cut.
    got.truncate(4_321);
    let last = offset_of(got.last().unwrap());
    drop(s);
    drop(client);
    eventually("the cut session is detached", || {
        server.metrics.active(Rpc::Session) == 0
    })
    .await;
    let client = server.client().await;
    let mut s = client
        .session(pb::Open {
            window_bytes: 512 * 1024,
            resume: Some(pb::ResumeFrom {
                session_id: id.clone(),
                last_received_offset: last,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(opened(&mut s).await.session_id, id);
    let (rest, _) = drain(&mut s).await;
    got.extend(rest);
    let metrics = server.metrics.clone();
    server.shutdown().await;
    (got, metrics)
}

fn assert_no_gap_no_duplicate(got: &[Bytes]) {
    let want = stored(&big_archive());
    assert_eq!(got.len(), want.len());
    for (i, g) in got.iter().enumerate() {
        assert_eq!(offset_of(g), i as u64);
        assert_eq!(g, &want[i].2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_cut_from_the_ring_has_no_gap_and_no_duplicate() {
    let (got, metrics) = resume_after_cut(64 * 1024 * 1024).await;
    assert_no_gap_no_duplicate(&got);
    assert_eq!(metrics.resumes(), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_past_the_ring_rereads_the_archive_with_no_gap() {
    // A ring of ~1 batch cannot hold offset 4321 any more once 5,000+ were sent.
    let (got, metrics) = resume_after_cut(64 * 1024).await;
    assert_no_gap_no_duplicate(&got);
    assert_eq!(metrics.resumes(), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_moves_the_stream_and_stale_batches_are_marked() {
    let server = TestServer::start(Path::new(SAMPLE), ServeOptions::default()).await;
    let client = server.client().await;
    let mut s = client
        .session(pb::Open {
            window_bytes: 64 * 1024,
            ..Default::default()
        })
        .await
        .unwrap();
    opened(&mut s).await;
    take_events(&mut s, 100).await;
    s.send(pb::client_frame::Frame::Seek(pb::Seek {
        to: Some(pb::Position {
            at: Some(pb::position::At::Offset(4000)),
        }),
    }))
    .await;
    let mut after = vec![];
    loop {
        match s.next().await.unwrap().unwrap() {
            InFrame::Events {
                events, epoch: 1, ..
            } => {
                let last = offset_of(events.last().unwrap());
                after.extend(events.iter().map(offset_of));
                s.ack(last, 1).await;
            }
            InFrame::Events { .. } => {} // in flight before the seek
            InFrame::Frame(pb::ServerFrame {
                frame: Some(pb::server_frame::Frame::End(_)),
            }) => break,
            InFrame::Frame(_) => {}
        }
    }
    assert_eq!(after, (4000..6000).collect::<Vec<u64>>());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_read_is_counted_even_after_the_last_one_sent() {
    // A Session for one early transaction reads the whole archive to find that nothing else
    // matches: the read counter says so once the session has ended.
    let path = big_archive();
    let archive = open(&path);
    let mut cursor = archive.cursor_at(10).unwrap();
    let tenth = cursor.next_raw().unwrap().unwrap().decode().unwrap();
    let server = TestServer::start(&path, ServeOptions::default()).await;
    let client = server.client().await;
    let mut s = client
        .session(pb::Open {
            filter: Some(pb::Filter {
                key_prefix: String::new(),
                txn_id: tenth.txn_id.clone(),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    opened(&mut s).await;
    let (events, report) = drain(&mut s).await;
    assert_eq!(events.len(), 1);
    assert_eq!(report.last_offset, Some(10));
    assert_eq!(server.metrics.events_read(), 60_000);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_replay_stops_the_server_reading() {
    let path = big_archive();
    let server = TestServer::start(&path, ServeOptions::default()).await;
    let client = server.client().await;
    let (namespace, agent_id) = channel_of(&path, 0);
    let mut s = client
        .replay_raw(sh::ReplayRequest {
            namespace,
            agent_id,
            start_ts: None,
            end_ts: None,
        })
        .await
        .unwrap();
    for _ in 0..10 {
        s.message().await.unwrap().unwrap();
    }
    drop(s);
    eventually("the Replay stream is dropped server-side", || {
        server.metrics.active(Rpc::Replay) == 0
    })
    .await;
    let read = server.metrics.events_read();
    assert!(read < 60_000, "the server read {read} of 60000 events");
    // And it stays stopped.
    let again = client.describe().await.unwrap();
    assert_eq!(again.events, 60_000);
    assert_eq!(server.metrics.events_read(), read);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_reaped() {
    let server = TestServer::start(
        Path::new(SAMPLE),
        ServeOptions {
            idle: Duration::from_millis(300),
            ..ServeOptions::default()
        },
    )
    .await;
    let client = server.client().await;
    let mut s = client
        .session(pb::Open {
            window_bytes: 4096,
            ..Default::default()
        })
        .await
        .unwrap();
    opened(&mut s).await;
    // Read but never ack: after the idle time the server cancels.
    let status = loop {
        match s.next().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("ended without a status"),
            Err(e) => break e,
        }
    };
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert!(status.message().contains("idle"), "{}", status.message());
    eventually("the session is gone", || {
        server.metrics.active(Rpc::Session) == 0
    })
    .await;
    assert!(server.metrics.sessions_reaped() >= 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_required_everywhere_but_health() {
    let server = TestServer::start(
        Path::new(SAMPLE),
        ServeOptions {
            token: Token::new("open-sesame"),
            ..ServeOptions::default()
        },
    )
    .await;
    for token in [None, Some("wrong".to_string())] {
        let client = server
            .client_with(ConnectOptions {
                token,
                ..Default::default()
            })
            .await;
        let e = client.describe().await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{}", e.message());
        assert!(!e.message().contains("open-sesame"));
        let e = replay_all(&client, sh::ReplayRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        let mut h = tonic_health::pb::health_client::HealthClient::new(client.channel());
        let r = h
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
        assert_eq!(
            r.into_inner().status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    let client = server
        .client_with(ConnectOptions {
            token: Some("open-sesame".into()),
            ..Default::default()
        })
        .await;
    assert_eq!(client.describe().await.unwrap().events, 6000);
    assert_eq!(server.metrics.errors(Code::Unauthenticated), 4);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let server = TestServer::start(Path::new(SAMPLE), ServeOptions::default()).await;
    let client = server.client().await;
    let mut h = tonic_health::pb::health_client::HealthClient::new(client.channel());
    for service in [
        "",
        "statehouse.v1.StatehouseService",
        "replayscope.v1.ReplayService",
    ] {
        let r = h
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap();
        assert_eq!(r.into_inner().status, 1, "{service:?} is SERVING");
    }
    let mut r = ServerReflectionClient::new(client.channel());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = r
        .server_reflection_info(futures_util::stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let msg = resp.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection answer {msg:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "statehouse.v1.StatehouseService",
        "replayscope.v1.ReplayService",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    // v1alpha too: Python's grpcio-reflection, older grpcurl, Postman and Evans speak only that.
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let mut r = ServerReflectionClient::new(client.channel());
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let msg = r
            .server_reflection_info(futures_util::stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner()
            .message()
            .await
            .unwrap()
            .unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
            panic!("unexpected v1alpha reflection answer {msg:?}");
        };
        assert!(
            list.service
                .iter()
                .any(|s| s.name == "replayscope.v1.ReplayService"),
            "{list:?}"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_stream_limit_is_resource_exhausted() {
    let server = TestServer::start(
        &big_archive(),
        ServeOptions {
            max_sessions: 1,
            ..ServeOptions::default()
        },
    )
    .await;
    let client = server.client().await;
    let mut first = client
        .session(pb::Open {
            window_bytes: 4096,
            ..Default::default()
        })
        .await
        .unwrap();
    opened(&mut first).await;
    let e = replay_all(&client, {
        let (namespace, agent_id) = channel_of(&big_archive(), 0);
        sh::ReplayRequest {
            namespace,
            agent_id,
            start_ts: None,
            end_ts: None,
        }
    })
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("limit is 1"), "{}", e.message());
    drop(first);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_a_client_that_trusts_the_ca() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
    let server = TestServer::start(
        Path::new(SAMPLE),
        ServeOptions {
            tls: Some((dir.join("server.pem"), dir.join("server.key"))),
            ..ServeOptions::default()
        },
    )
    .await;
    let client = Client::connect(
        &format!("localhost:{}", server.addr.port()),
        ConnectOptions {
            tls: true,
            ca_pem: Some(std::fs::read(dir.join("ca.pem")).unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(client.describe().await.unwrap().events, 6000);
    // A plaintext client does not get through.
    let plain = Client::connect(&server.addr.to_string(), ConnectOptions::default()).await;
    let failed = match plain {
        Err(_) => true,
        Ok(c) => c.describe().await.is_err(),
    };
    assert!(failed);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_streams_with_unavailable_and_metrics_are_served() {
    let server = TestServer::start(
        &big_archive(),
        ServeOptions {
            metrics: Some("127.0.0.1:0".parse().unwrap()),
            ..ServeOptions::default()
        },
    )
    .await;
    let client = server.client().await;
    let mut s = client
        .session(pb::Open {
            window_bytes: 64 * 1024,
            ..Default::default()
        })
        .await
        .unwrap();
    opened(&mut s).await;
    take_events(&mut s, 10).await;

    let text = http_get(server.metrics_addr.unwrap(), "/metrics").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("replayscope_streams_active{rpc=\"session\"} 1"),
        "{text}"
    );
    assert!(text.contains("# TYPE replayscope_events_sent_total counter"));
    // The archive's chunk cache: the session's first group was read, so it missed at least once
    // and holds something.
    let value = |name: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("replayscope_{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("chunk_cache_misses_total") > 0, "{text}");
    assert!(value("chunk_cache_bytes") > 0, "{text}");
    assert!(value("chunk_cache_budget_bytes") >= value("chunk_cache_bytes"));
    let text = http_get(server.metrics_addr.unwrap(), "/other").await;
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");

    server.stop.cancel();
    let status = loop {
        match s.next().await {
            Ok(Some(InFrame::Events { events, epoch, .. })) => {
                s.ack(offset_of(events.last().unwrap()), epoch).await;
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("ended without a status"),
            Err(e) => break e,
        }
    };
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("shutting down"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("resume with session_id"),
        "{}",
        status.message()
    );
    tokio::time::timeout(Duration::from_secs(10), server.join)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).await.unwrap();
    out
}
