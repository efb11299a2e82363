//! HTTP against a real server: a hyper server on 127.0.0.1 (port 0, started by each test),
//! a real `reqwest` client (0.13, and 0.12 in `mod reqwest_0_12`), retried by reflexio on a
//! virtual clock.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, body::Incoming};
use hyper_util::rt::TokioIo;
use reflexio::integrations::http::retry_after;
use reflexio::integrations::reqwest::classify_response;
use reflexio::strategies::constant;
use reflexio::testing::VirtualClock;
use reflexio::{
    AsyncRetryPolicy, Classification, Classify, ErrorClass, EventKind, RetryEvent, StopReason,
};

/// Every test is bounded in time, whatever happens to the server or the client.
const BOUND: Duration = Duration::from_secs(20);

/// One scripted answer: a status, an optional `Retry-After`, a body.
type Answer = (u16, Option<&'static str>, &'static str);

/// Starts a server on 127.0.0.1 answering the `i`-th request with `script[i]` (the last answer
/// repeats). Returns its address and the count of requests it received.
async fn serve(script: Vec<Answer>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let served = hits.clone();
    let script = Arc::new(script);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (hits, script) = (served.clone(), script.clone());
            let service = service_fn(move |_: Request<Incoming>| {
                let i = hits.fetch_add(1, Ordering::SeqCst);
                let (status, retry_after, body) = script[i.min(script.len() - 1)];
                let mut response = Response::builder().status(status);
                if let Some(value) = retry_after {
                    response = response.header("retry-after", value);
                }
                let response = response.body(Full::new(body.as_bytes())).unwrap();
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    (addr, hits)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// What the operation returns on an error status, keeping the class and `Retry-After`
/// that `classify_response` read.
#[derive(Debug)]
enum FetchError {
    Transport(reqwest::Error),
    Status(StatusCode, Classification),
}

impl Classify for FetchError {
    fn classification(&self) -> Classification {
        match self {
            FetchError::Transport(e) => e.classification(),
            FetchError::Status(_, c) => *c,
        }
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

fn recorder() -> (Events, impl Fn(&RetryEvent<'_>) + Send + Sync + 'static) {
    let events = Events::default();
    let sink = events.clone();
    (events, move |e: &RetryEvent<'_>| {
        sink.lock()
            .unwrap()
            .push((e.kind, e.class, e.delay, e.stop));
    })
}

#[tokio::test]
async fn a_503_then_a_429_with_retry_after_then_200() {
    tokio::time::timeout(BOUND, async {
        let (addr, hits) = serve(vec![
            (503, None, "unavailable"),
            (429, Some("1"), "slow down"),
            (200, None, "hello"),
        ])
        .await;
        let clock = VirtualClock::new();
        let (events, hook) = recorder();
        let policy = AsyncRetryPolicy::builder()
            .strategy(constant(Duration::from_millis(10)))
            .max_attempts(5)
            .clock(clock.clone())
            .on_event(hook)
            .build()
            .unwrap();
        let client = client();
        let url = format!("http://{addr}/");

        let body = policy
            .call(|| async {
                let response = client
                    .get(&url)
                    .send()
                    .await
                    .map_err(FetchError::Transport)?;
                match classify_response(&response) {
                    Some(c) => Err(FetchError::Status(response.status(), c)),
                    None => response.text().await.map_err(FetchError::Transport),
                }
            })
            .await
            .unwrap();

        assert_eq!(body, "hello");
        assert_eq!(hits.load(Ordering::SeqCst), 3, "exactly 3 requests");
        // The strategy says 10 ms after the 503; the server's Retry-After says 1 s after the 429.
        assert_eq!(
            clock.sleeps(),
            [Duration::from_millis(10), Duration::from_secs(1)]
        );
        assert!(clock.now() >= Duration::from_secs(1));
        assert_eq!(
            *events.lock().unwrap(),
            [
                (
                    EventKind::Retry,
                    Some(ErrorClass::ServerError),
                    Some(Duration::from_millis(10)),
                    None
                ),
                (
                    EventKind::Retry,
                    Some(ErrorClass::RateLimit),
                    Some(Duration::from_secs(1)),
                    None
                ),
                (EventKind::Success, None, None, None),
            ]
        );
    })
    .await
    .expect("bounded");
}

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_stops_at_once() {
    tokio::time::timeout(BOUND, async {
        let (addr, hits) = serve(vec![(503, Some("120"), "down for maintenance")]).await;
        let clock = VirtualClock::new();
        let (events, hook) = recorder();
        let policy = AsyncRetryPolicy::builder()
            .deadline(Duration::from_secs(30))
            .clock(clock.clone())
            .on_event(hook)
            .build()
            .unwrap();
        let client = client();
        let url = format!("http://{addr}/");
        let out = policy
            .call(|| async {
                let response = client
                    .get(&url)
                    .send()
                    .await
                    .map_err(FetchError::Transport)?;
                match classify_response(&response) {
                    Some(c) => Err(FetchError::Status(response.status(), c)),
                    None => Ok(()),
                }
            })
            .await;
        match out {
            Err(FetchError::Status(status, c)) => {
                assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(c.retry_after, Some(Duration::from_secs(120)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert!(clock.sleeps().is_empty());
        assert_eq!(
            *events.lock().unwrap(),
            [(
                EventKind::GaveUp,
                Some(ErrorClass::ServerError),
                None,
                Some(StopReason::DeadlineExceeded)
            )]
        );
    })
    .await
    .expect("bounded");
}

#[tokio::test]
async fn reqwest_errors_are_classified_from_real_failures() {
    tokio::time::timeout(BOUND, async {
        // A status error, from `error_for_status()`.
        let (addr, _) = serve(vec![(404, None, "no such thing")]).await;
        let err = client()
            .get(format!("http://{addr}/"))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap_err();
        assert_eq!(err.classification().class, ErrorClass::Permanent);

        // Connection refused: a port that was just free.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let err = client()
            .get(format!("http://{closed}/"))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        assert_eq!(err.classification().class, ErrorClass::Transient);

        // A timeout: a server that accepts and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let _keep = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = silent.accept().await {
                held.push(stream);
            }
        });
        let err = reqwest::Client::builder()
            .timeout(Duration::from_millis(50))
            .build()
            .unwrap()
            .get(format!("http://{silent_addr}/"))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        assert_eq!(err.classification().class, ErrorClass::Transient);

        // An invalid request never leaves the client.
        let err = client().get("http://[::1").send().await.unwrap_err();
        assert_eq!(err.classification().class, ErrorClass::Permanent);
    })
    .await
    .expect("bounded");
}

#[tokio::test]
async fn the_default_classifier_retries_reqwest_errors_until_the_server_is_up() {
    tokio::time::timeout(BOUND, async {
        let (addr, hits) = serve(vec![(502, None, "bad gateway"), (200, None, "up")]).await;
        let clock = VirtualClock::new();
        let policy = AsyncRetryPolicy::<reqwest::Error>::builder()
            .strategy(constant(Duration::from_millis(100)))
            .clock(clock.clone())
            .build()
            .unwrap();
        let client = client();
        let url = format!("http://{addr}/");
        let text = policy
            .call(|| async {
                let response = client.get(&url).send().await?;
                response.error_for_status()?.text().await
            })
            .await
            .unwrap();
        assert_eq!(text, "up");
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert_eq!(clock.sleeps(), [Duration::from_millis(100)]);
    })
    .await
    .expect("bounded");
}

#[tokio::test]
async fn status_and_retry_after_from_real_response_headers() {
    tokio::time::timeout(BOUND, async {
        let (addr, _) = serve(vec![(
            429,
            Some("Thu, 01 Jan 1970 00:00:00 GMT"),
            "slow down",
        )])
        .await;
        let response = client()
            .get(format!("http://{addr}/"))
            .send()
            .await
            .unwrap();
        let status: http::StatusCode = response.status();
        assert_eq!(status.classification().class, ErrorClass::RateLimit);
        // An HTTP-date in the past: retry now.
        assert_eq!(retry_after(response.headers()), Some(Duration::ZERO));
        assert_eq!(
            classify_response(&response),
            Some(
                Classification::new(ErrorClass::RateLimit)
                    .with_retry_after(Duration::ZERO)
                    .with_status(429)
            )
        );
    })
    .await
    .expect("bounded");
}

/// The same server script, with the responses classified by the policy itself
/// (`.retry_if_ok(classify_response)`): the operation is plain reqwest.
#[tokio::test]
async fn retry_if_ok_with_classify_response_honours_retry_after() {
    tokio::time::timeout(BOUND, async {
        let (addr, hits) = serve(vec![
            (503, None, "unavailable"),
            (429, Some("1"), "slow down"),
            (200, None, "hello"),
        ])
        .await;
        let clock = VirtualClock::new();
        let policy = AsyncRetryPolicy::<reqwest::Error>::builder()
            .strategy(constant(Duration::from_millis(10)))
            .max_attempts(5)
            .clock(clock.clone())
            .retry_if_ok(classify_response)
            .build()
            .unwrap();
        let client = client();
        let url = format!("http://{addr}/");
        let response = policy.call(|| client.get(&url).send()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.unwrap(), "hello");
        assert_eq!(hits.load(Ordering::SeqCst), 3, "exactly 3 requests");
        assert_eq!(
            clock.sleeps(),
            [Duration::from_millis(10), Duration::from_secs(1)]
        );

        // Out of attempts: the last response is returned, for the caller to read.
        let (addr, hits) = serve(vec![(503, Some("0"), "still down")]).await;
        let url = format!("http://{addr}/");
        let response = policy.call(|| client.get(&url).send()).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.text().await.unwrap(), "still down");
        assert_eq!(hits.load(Ordering::SeqCst), 5);
    })
    .await
    .expect("bounded");
}

/// reqwest 0.12 (feature `reqwest-0-12`): the same classifications through its own client.
mod reqwest_0_12 {
    use super::*;
    use reflexio::integrations::reqwest_0_12::classify_response;
    use reqwest012 as reqwest;

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn retry_if_ok_with_classify_response_honours_retry_after() {
        tokio::time::timeout(BOUND, async {
            let (addr, hits) = serve(vec![
                (503, None, "unavailable"),
                (429, Some("1"), "slow down"),
                (200, None, "hello"),
            ])
            .await;
            let clock = VirtualClock::new();
            let (events, hook) = recorder();
            let policy = AsyncRetryPolicy::<reqwest::Error>::builder()
                .strategy(constant(Duration::from_millis(10)))
                .max_attempts(5)
                .clock(clock.clone())
                .retry_if_ok(classify_response)
                .on_event(hook)
                .build()
                .unwrap();
            let client = client();
            let url = format!("http://{addr}/");
            let response = policy.call(|| client.get(&url).send()).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.text().await.unwrap(), "hello");
            assert_eq!(hits.load(Ordering::SeqCst), 3, "exactly 3 requests");
            assert_eq!(
                clock.sleeps(),
                [Duration::from_millis(10), Duration::from_secs(1)]
            );
            assert_eq!(
                *events.lock().unwrap(),
                [
                    (
                        EventKind::Retry,
                        Some(ErrorClass::ServerError),
                        Some(Duration::from_millis(10)),
                        None
                    ),
                    (
                        EventKind::Retry,
                        Some(ErrorClass::RateLimit),
                        Some(Duration::from_secs(1)),
                        None
                    ),
                    (EventKind::Success, None, None, None),
                ]
            );
        })
        .await
        .expect("bounded");
    }

    #[tokio::test]
    async fn the_default_classifier_retries_reqwest_errors_until_the_server_is_up() {
        tokio::time::timeout(BOUND, async {
            let (addr, hits) = serve(vec![(502, None, "bad gateway"), (200, None, "up")]).await;
            let clock = VirtualClock::new();
            let policy = AsyncRetryPolicy::<reqwest::Error>::builder()
                .strategy(constant(Duration::from_millis(100)))
                .clock(clock.clone())
                .build()
                .unwrap();
            let client = client();
            let url = format!("http://{addr}/");
            let text = policy
                .call(|| async {
                    let response = client.get(&url).send().await?;
                    response.error_for_status()?.text().await
                })
                .await
                .unwrap();
            assert_eq!(text, "up");
            assert_eq!(hits.load(Ordering::SeqCst), 2);
            assert_eq!(clock.sleeps(), [Duration::from_millis(100)]);
        })
        .await
        .expect("bounded");
    }

    #[tokio::test]
    async fn reqwest_errors_are_classified_from_real_failures() {
        tokio::time::timeout(BOUND, async {
            // A status error, from `error_for_status()`.
            let (addr, _) = serve(vec![(404, None, "no such thing")]).await;
            let err = client()
                .get(format!("http://{addr}/"))
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap_err();
            assert_eq!(err.classification().class, ErrorClass::Permanent);

            // Connection refused: a port that was just free.
            let closed = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap()
            };
            let err = client()
                .get(format!("http://{closed}/"))
                .send()
                .await
                .unwrap_err();
            assert!(err.is_connect(), "{err:?}");
            assert_eq!(err.classification().class, ErrorClass::Transient);

            // A timeout: a server that accepts and never answers.
            let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let silent_addr = silent.local_addr().unwrap();
            let _keep = tokio::spawn(async move {
                let mut held = Vec::new();
                while let Ok((stream, _)) = silent.accept().await {
                    held.push(stream);
                }
            });
            let err = reqwest::Client::builder()
                .timeout(Duration::from_millis(50))
                .build()
                .unwrap()
                .get(format!("http://{silent_addr}/"))
                .send()
                .await
                .unwrap_err();
            assert!(err.is_timeout(), "{err:?}");
            assert_eq!(err.classification().class, ErrorClass::Transient);

            // An invalid request never leaves the client.
            let err = client().get("http://[::1").send().await.unwrap_err();
            assert_eq!(err.classification().class, ErrorClass::Permanent);

            // A 429's `Retry-After` read from a real 0.12 response.
            let (addr, _) = serve(vec![(429, Some("2"), "slow down")]).await;
            let response = client()
                .get(format!("http://{addr}/"))
                .send()
                .await
                .unwrap();
            assert_eq!(
                classify_response(&response),
                Some(
                    Classification::new(ErrorClass::RateLimit)
                        .with_retry_after(Duration::from_secs(2))
                        .with_status(429)
                )
            );
        })
        .await
        .expect("bounded");
    }
}
