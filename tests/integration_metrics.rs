//! The `metrics` hook, recorded by `metrics-util`'s debugging recorder: the four metrics, their
//! values, and label sets that are low-cardinality and the same for every event of a metric.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};
use reflexio::integrations::metrics as retry_metrics;
use reflexio::strategies::constant;
use reflexio::testing::VirtualClock;
use reflexio::{
    CircuitBreaker, CircuitOpen, Classification, Classify, ErrorClass, RateLimitError, RetryPolicy,
    ServerError, TransientError,
};

type Labels = BTreeMap<String, String>;

/// Every metric of the snapshot: `(kind, name, labels) -> value`.
fn snapshot(snapshotter: &Snapshotter) -> Vec<(MetricKind, String, Labels, DebugValue)> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _unit, _description, value)| {
            let (kind, key) = key.into_parts();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (kind, key.name().to_owned(), labels, value)
        })
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn counter(
    all: &[(MetricKind, String, Labels, DebugValue)],
    name: &str,
    want: &[(&str, &str)],
) -> u64 {
    let want = labels(want);
    all.iter()
        .find_map(|(kind, n, l, v)| match v {
            DebugValue::Counter(c) if *kind == MetricKind::Counter && n == name && *l == want => {
                Some(*c)
            }
            _ => None,
        })
        .unwrap_or(0)
}

fn policy<E: std::fmt::Debug + reflexio::Classify + 'static>(operation: &str) -> RetryPolicy<E> {
    RetryPolicy::builder()
        .strategy(constant(Duration::from_millis(250)))
        .max_attempts(3)
        .operation(operation)
        .on_event(retry_metrics::hook())
        .clock(VirtualClock::new())
        .build()
        .unwrap()
}

/// Runs a few calls: one success at once, one success after a retry, one give-up after retries,
/// and one with a server-suggested delay, on an unnamed policy.
fn run_workload() -> Snapshotter {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        retry_metrics::describe();

        let p = policy::<TransientError>("get_user");
        assert_eq!(p.call(|| Ok::<_, TransientError>(1)), Ok(1));
        let mut calls = 0;
        let out = p.call(|| {
            calls += 1;
            if calls == 1 {
                Err(TransientError::new("reset"))
            } else {
                Ok(2)
            }
        });
        assert_eq!(out, Ok(2));

        let p = policy::<ServerError>("charge");
        assert!(p.call(|| Err::<(), _>(ServerError::new("503"))).is_err());

        let unnamed = RetryPolicy::builder()
            .strategy(constant(Duration::from_millis(1)))
            .max_attempts(2)
            .on_event(retry_metrics::hook())
            .clock(VirtualClock::new())
            .build()
            .unwrap();
        let mut calls = 0;
        let out = unnamed.call(|| {
            calls += 1;
            if calls == 1 {
                Err(RateLimitError::new("slow down").with_retry_after(Duration::from_secs(2)))
            } else {
                Ok(())
            }
        });
        assert!(out.is_ok());
    });
    snapshotter
}

#[test]
fn counters_count_attempts_retries_and_giveups() {
    let all = snapshot(&run_workload());
    let attempts = |op, class, outcome| {
        counter(
            &all,
            "reflexio_attempts_total",
            &[("operation", op), ("class", class), ("outcome", outcome)],
        )
    };
    // get_user: success at once, then fail + success.
    assert_eq!(attempts("get_user", "none", "success"), 2);
    assert_eq!(attempts("get_user", "transient", "retry"), 1);
    // charge: 3 attempts, 2 retried, the last one given up.
    assert_eq!(attempts("charge", "server_error", "retry"), 2);
    assert_eq!(attempts("charge", "server_error", "gave_up"), 1);
    assert_eq!(attempts("unnamed", "rate_limit", "retry"), 1);
    assert_eq!(attempts("unnamed", "none", "success"), 1);

    let retries = |op, class| {
        counter(
            &all,
            "reflexio_retries_total",
            &[("operation", op), ("class", class)],
        )
    };
    assert_eq!(retries("get_user", "transient"), 1);
    assert_eq!(retries("charge", "server_error"), 2);
    assert_eq!(retries("unnamed", "rate_limit"), 1);

    assert_eq!(
        counter(
            &all,
            "reflexio_giveups_total",
            &[
                ("operation", "charge"),
                ("class", "server_error"),
                ("stop_reason", "max_attempts")
            ]
        ),
        1
    );
    let giveups: Vec<_> = all
        .iter()
        .filter(|(_, n, ..)| n == "reflexio_giveups_total")
        .collect();
    assert_eq!(giveups.len(), 1, "only `charge` gave up: {giveups:?}");
}

#[test]
fn the_delay_histogram_records_seconds_including_retry_after() {
    let all = snapshot(&run_workload());
    let delays = |op: &str, class: &str| -> Vec<f64> {
        let want = labels(&[("operation", op), ("class", class)]);
        all.iter()
            .find_map(|(kind, n, l, v)| match v {
                DebugValue::Histogram(values)
                    if *kind == MetricKind::Histogram
                        && n == "reflexio_retry_delay_seconds"
                        && *l == want =>
                {
                    Some(values.iter().map(|v| v.into_inner()).collect())
                }
                _ => None,
            })
            .unwrap_or_default()
    };
    assert_eq!(delays("get_user", "transient"), [0.25]);
    assert_eq!(delays("charge", "server_error"), [0.25, 0.25]);
    assert_eq!(
        delays("unnamed", "rate_limit"),
        [2.0],
        "the server's delay, not the strategy's"
    );
}

#[test]
fn each_metric_has_one_fixed_low_cardinality_label_set() {
    let all = snapshot(&run_workload());
    let mut keys_by_metric: BTreeMap<String, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (_, name, labels, _) in &all {
        keys_by_metric
            .entry(name.clone())
            .or_default()
            .insert(labels.keys().cloned().collect());
    }
    let keys = |k: &[&str]| -> BTreeSet<Vec<String>> {
        std::iter::once(k.iter().map(|s| (*s).to_owned()).collect()).collect()
    };
    assert_eq!(
        keys_by_metric,
        BTreeMap::from([
            (
                "reflexio_attempts_total".to_owned(),
                keys(&["class", "operation", "outcome"])
            ),
            (
                "reflexio_giveups_total".to_owned(),
                keys(&["class", "operation", "stop_reason"])
            ),
            (
                "reflexio_retries_total".to_owned(),
                keys(&["class", "operation"])
            ),
            (
                "reflexio_retry_delay_seconds".to_owned(),
                keys(&["class", "operation"])
            ),
        ])
    );
    // No label value is a number: neither the attempt number nor a delay is ever a label.
    let classes: BTreeSet<&str> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
    for (_, name, labels, _) in &all {
        for (key, value) in labels {
            assert!(value.parse::<f64>().is_err(), "{name} {key}={value}");
            if key == "class" {
                assert!(
                    value == "none" || classes.contains(value.as_str()),
                    "{value}"
                );
            }
        }
    }
}

#[test]
fn describe_gives_help_texts_and_the_histogram_unit() {
    let snapshotter = run_workload();
    let described: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, unit, description, _)| (key_name(&key), unit, description.is_some()))
        .collect();
    assert!(
        described
            .iter()
            .all(|(_, _, has_description)| *has_description)
    );
    assert!(
        described
            .iter()
            .any(|(name, unit, _)| name == "reflexio_retry_delay_seconds"
                && *unit == Some(metrics::Unit::Seconds))
    );
}

fn key_name(key: &CompositeKey) -> String {
    key.key().name().to_owned()
}

/// An error that a circuit breaker can stand in for.
#[derive(Debug)]
enum CallError {
    Down,
    Rejected,
}

impl From<CircuitOpen> for CallError {
    fn from(_: CircuitOpen) -> Self {
        CallError::Rejected
    }
}

impl Classify for CallError {
    fn classification(&self) -> Classification {
        match self {
            CallError::Down => ErrorClass::ServerError.into(),
            CallError::Rejected => ErrorClass::Transient.into(),
        }
    }
}

#[test]
fn circuit_breaker_events_are_counted_apart_from_attempts() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let clock = VirtualClock::new();
        let breaker = CircuitBreaker::builder()
            .min_calls(2)
            .failure_rate(0.5)
            .clock(clock.clone())
            .build()
            .unwrap();
        let policy = RetryPolicy::builder()
            .strategy(constant(Duration::from_millis(10)))
            .max_attempts(2)
            .operation("pay")
            .circuit_breaker(breaker)
            .on_event(retry_metrics::hook())
            .clock(clock)
            .build()
            .unwrap();
        // Two failures open the breaker; the next call is rejected without being made.
        let _ = policy.call(|| Err::<(), _>(CallError::Down));
        let mut made = false;
        let rejected = policy.call(|| {
            made = true;
            Ok::<_, CallError>(())
        });
        assert!(matches!(rejected, Err(CallError::Rejected)));
        assert!(!made);
    });
    let all = snapshot(&snapshotter);
    let circuit = |event| {
        counter(
            &all,
            "reflexio_circuit_events_total",
            &[("operation", "pay"), ("event", event)],
        )
    };
    assert_eq!(circuit("circuit_opened"), 1);
    assert_eq!(circuit("circuit_rejected"), 1);
    // Every attempt-counter event has the same three label keys, circuit or not.
    for (_, name, labels, _) in &all {
        let keys: Vec<&str> = labels.keys().map(String::as_str).collect();
        match name.as_str() {
            "reflexio_attempts_total" => assert_eq!(keys, ["class", "operation", "outcome"]),
            "reflexio_circuit_events_total" => assert_eq!(keys, ["event", "operation"]),
            _ => {}
        }
    }
    assert_eq!(
        counter(
            &all,
            "reflexio_attempts_total",
            &[
                ("operation", "pay"),
                ("class", "server_error"),
                ("outcome", "retry")
            ]
        ),
        1
    );
}
