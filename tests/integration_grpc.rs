//! gRPC statuses (`tonic::Status`) retried by reflexio: classes by code, and the server's
//! `grpc-retry-pushback-ms` as a minimum delay, or as "stop" when negative or malformed.
//!
//! First end to end: a real tonic server on 127.0.0.1 (port 0, started by each test) serving
//! `tonic-health`'s `grpc.health.v1.Health` behind a wrapper that answers scripted statuses
//! first, and a real tonic client over HTTP/2, retried by reflexio on a virtual clock (so the
//! waits are asserted exactly, and not slept for real). Then the same rules on statuses made in
//! process.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reflexio::strategies::constant;
use reflexio::testing::VirtualClock;
use reflexio::{AsyncRetryPolicy, ErrorClass, EventKind, RetryEvent, StopReason};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::ServiceExt as _;

/// Every end-to-end test is bounded in time, whatever happens to the server or the client.
const BOUND: Duration = Duration::from_secs(20);

/// One scripted answer of the server: a status code with an optional `grpc-retry-pushback-ms`,
/// or `None` to pass the request on to the health service.
type Answer = Option<(Code, Option<&'static str>)>;

/// A tonic server running on 127.0.0.1.
struct GrpcServer {
    addr: SocketAddr,
    /// The requests that reached the server, scripted or passed on.
    hits: Arc<AtomicUsize>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl GrpcServer {
    /// Serves `grpc.health.v1.Health` (whose overall status is `SERVING`), answering the `i`-th
    /// request with `script[i]` instead while there is one.
    async fn start(script: Vec<Answer>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let (_reporter, health) = tonic_health::server::health_reporter();
        let (served, script) = (hits.clone(), Arc::new(script));
        // The wrapper: a gRPC error is a "trailers-only" response, its status and metadata in
        // the HTTP/2 headers, as `Status::into_http` writes it.
        let service = tower::service_fn(move |request: http::Request<Body>| {
            let i = served.fetch_add(1, Ordering::SeqCst);
            let answer = script.get(i).copied().flatten();
            let health = health.clone();
            async move {
                let Some((code, pushback)) = answer else {
                    return health.oneshot(request).await;
                };
                let mut status = Status::new(code, "scripted");
                if let Some(value) = pushback {
                    status
                        .metadata_mut()
                        .insert("grpc-retry-pushback-ms", value.parse().unwrap());
                }
                Ok::<_, Infallible>(status.into_http())
            }
        });
        let (shutdown, stop) = oneshot::channel();
        let task = tokio::spawn(Server::builder().serve_with_incoming_shutdown(
            service,
            TcpIncoming::from(listener),
            async {
                stop.await.ok();
            },
        ));
        Self {
            addr,
            hits,
            shutdown,
            task,
        }
    }

    async fn client(&self) -> HealthClient<Channel> {
        let channel = Endpoint::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5))
            .connect()
            .await
            .unwrap();
        HealthClient::new(channel)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    async fn stop(self) {
        self.shutdown.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

type Events = Arc<
    Mutex<
        Vec<(
            EventKind,
            Option<ErrorClass>,
            Option<Duration>,
            Option<StopReason>,
        )>,
    >,
>;

/// A policy retrying 5 times with a constant 50 ms on a virtual clock, recording its events.
fn policy(clock: &VirtualClock) -> (AsyncRetryPolicy<Status>, Events) {
    let events = Events::default();
    let sink = events.clone();
    let policy = AsyncRetryPolicy::<Status>::builder()
        .operation("grpc.health.v1.Health/Check")
        .strategy(constant(Duration::from_millis(50)))
        .max_attempts(5)
        .clock(clock.clone())
        .on_event(move |e: &RetryEvent<'_>| {
            sink.lock()
                .unwrap()
                .push((e.kind, e.class, e.delay, e.stop));
        })
        .build()
        .unwrap();
    (policy, events)
}

/// Calls `Check` for the server's overall health under `policy`.
async fn check(
    policy: &AsyncRetryPolicy<Status>,
    client: &HealthClient<Channel>,
) -> Result<HealthCheckResponse, Status> {
    policy
        .call(|| {
            let mut client = client.clone();
            async move {
                let request = HealthCheckRequest {
                    service: String::new(),
                };
                client.check(request).await.map(tonic::Response::into_inner)
            }
        })
        .await
}

#[tokio::test]
async fn over_tcp_unavailable_then_resource_exhausted_with_pushback_then_serving() {
    tokio::time::timeout(BOUND, async {
        let server = GrpcServer::start(vec![
            Some((Code::Unavailable, None)),
            Some((Code::ResourceExhausted, Some("250"))),
        ])
        .await;
        let client = server.client().await;
        let clock = VirtualClock::new();
        let (policy, events) = policy(&clock);

        let reply = check(&policy, &client).await.unwrap();

        assert_eq!(reply.status(), ServingStatus::Serving);
        assert_eq!(server.hits(), 3, "exactly 3 attempts reached the server");
        // The strategy's 50 ms after UNAVAILABLE; the server's pushback, 250 ms (more than the
        // strategy's 50), after RESOURCE_EXHAUSTED.
        let sleeps = clock.sleeps();
        assert_eq!(
            sleeps,
            [Duration::from_millis(50), Duration::from_millis(250)]
        );
        assert!(
            sleeps[1] >= Duration::from_millis(250),
            "at least the pushback"
        );
        assert_eq!(
            *events.lock().unwrap(),
            [
                (
                    EventKind::Retry,
                    Some(ErrorClass::Transient),
                    Some(Duration::from_millis(50)),
                    None
                ),
                (
                    EventKind::Retry,
                    Some(ErrorClass::RateLimit),
                    Some(Duration::from_millis(250)),
                    None
                ),
                (EventKind::Success, None, None, None),
            ]
        );
        server.stop().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test]
async fn over_tcp_a_negative_or_malformed_pushback_stops_at_once() {
    tokio::time::timeout(BOUND, async {
        for value in ["-1", "soon"] {
            // The server would answer SERVING on a second attempt: there must be none.
            let server = GrpcServer::start(vec![Some((Code::Unavailable, Some(value)))]).await;
            let client = server.client().await;
            let clock = VirtualClock::new();
            let (policy, events) = policy(&clock);

            let status = check(&policy, &client).await.unwrap_err();

            assert_eq!(server.hits(), 1, "one attempt ({value})");
            // The server's status itself, as it came over the wire.
            assert_eq!(status.code(), Code::Unavailable);
            assert_eq!(status.message(), "scripted");
            assert_eq!(
                status.metadata().get("grpc-retry-pushback-ms").unwrap(),
                value
            );
            assert!(clock.sleeps().is_empty());
            assert_eq!(
                *events.lock().unwrap(),
                [(
                    EventKind::GaveUp,
                    Some(ErrorClass::Permanent),
                    None,
                    Some(StopReason::NonRetryable)
                )]
            );
            server.stop().await;
        }
    })
    .await
    .expect("bounded");
}

// In process: the same rules on statuses that no transport carried.

fn with_pushback(code: Code, value: &str) -> Status {
    let mut status = Status::new(code, "busy");
    status
        .metadata_mut()
        .insert("grpc-retry-pushback-ms", value.parse().unwrap());
    status
}

/// Calls an operation failing with `failures[n]` on call `n`, then succeeding.
async fn run(
    failures: Vec<Status>,
) -> (
    Result<u32, Status>,
    u32,
    VirtualClock,
    Vec<(EventKind, Option<StopReason>)>,
) {
    let clock = VirtualClock::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let policy = AsyncRetryPolicy::<Status>::builder()
        .strategy(constant(Duration::from_millis(50)))
        .max_attempts(5)
        .clock(clock.clone())
        .on_event(move |e| sink.lock().unwrap().push((e.kind, e.stop)))
        .build()
        .unwrap();
    let calls = AtomicU32::new(0);
    let failures = Mutex::new(failures.into_iter());
    let out = policy
        .call(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            let failure = failures.lock().unwrap().next();
            async move {
                match failure {
                    Some(status) => Err(status),
                    None => Ok(n),
                }
            }
        })
        .await;
    let events = events.lock().unwrap().clone();
    (out, calls.load(Ordering::SeqCst), clock, events)
}

#[tokio::test]
async fn unavailable_and_aborted_are_retried_with_the_strategy_delay() {
    let (out, calls, clock, _) = run(vec![
        Status::unavailable("connection reset"),
        Status::aborted("transaction conflict"),
    ])
    .await;
    assert_eq!((out.unwrap(), calls), (3, 3));
    assert_eq!(clock.sleeps(), [Duration::from_millis(50); 2]);
}

#[tokio::test]
async fn a_pushback_is_a_minimum_delay() {
    let (out, calls, clock, _) = run(vec![
        with_pushback(Code::ResourceExhausted, "1500"),
        with_pushback(Code::Unavailable, "0"),
    ])
    .await;
    assert_eq!((out.unwrap(), calls), (3, 3));
    // 1.5 s as the server asked; then the strategy's 50 ms, since 0 asks for no extra wait.
    assert_eq!(
        clock.sleeps(),
        [Duration::from_millis(1500), Duration::from_millis(50)]
    );
}

#[tokio::test]
async fn a_negative_or_malformed_pushback_stops_at_once() {
    for value in ["-1", "later"] {
        let (out, calls, clock, events) = run(vec![with_pushback(Code::Unavailable, value)]).await;
        assert_eq!(
            out.unwrap_err().code(),
            Code::Unavailable,
            "the status itself"
        );
        assert_eq!(calls, 1, "{value}");
        assert!(clock.sleeps().is_empty());
        assert_eq!(
            events,
            [(EventKind::GaveUp, Some(StopReason::NonRetryable))]
        );
    }
}

#[tokio::test]
async fn client_mistakes_are_not_retried() {
    for status in [
        Status::invalid_argument("bad id"),
        Status::not_found("no such user"),
        Status::unauthenticated("expired token"),
        Status::permission_denied("not yours"),
        Status::unimplemented("no such method"),
    ] {
        let code = status.code();
        let (out, calls, _, _) = run(vec![status]).await;
        assert_eq!((out.unwrap_err().code(), calls), (code, 1));
    }
}
