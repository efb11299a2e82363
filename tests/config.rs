//! Policies from configuration (issue 17): what files say, the errors they get, shared budgets
//! and breakers by name, agreement with the builder, and `#[retry]` on a configured policy.

use std::collections::BTreeMap;
use std::io;
use std::num::NonZeroU32;
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use proptest::prelude::*;
use reflexio::config::{
    BreakerConfig, BudgetConfig, Deadline, LoadError, NamedOr, Policies, RetryConfig,
    RetryConfigSet, StrategyConfig, UnknownRetries, from_deserializer,
};
use reflexio::strategies::{
    constant, decorrelated_jitter, equal_jitter, exponential, full_jitter, no_delay, token_backoff,
};
use reflexio::testing::VirtualClock;
use reflexio::{
    AsyncRetryPolicy, CircuitState, ConfigProblem, ErrorClass, RetryPolicy, StopReason, retry,
};

fn from_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, LoadError> {
    let de = toml::Deserializer::parse(text).expect("TOML syntax");
    from_deserializer(de)
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, LoadError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = from_deserializer(&mut de)?;
    de.end().expect("nothing after the document");
    Ok(value)
}

fn timed_out() -> io::Error {
    io::ErrorKind::TimedOut.into()
}

// ---------------------------------------------------------------------------------------------
// Reading: every setting, durations as people write them.

#[test]
fn every_setting_is_read() {
    let text = r#"
        operation = "fetch"
        max_attempts = 5
        deadline = "1m30s"
        max_server_delay = "45s"
        max_unknown_retries = "none"
        strategy = { kind = "exponential", base = "250ms", max = "10s", factor = 3 }
        strategy_for.rate_limit = { kind = "token_backoff", base = "1s" }
        strategy_for.concurrency = { kind = "no_delay" }
        max_retries_for = { rate_limit = 2, server_error = 0 }
        seed = 42
        attempt_timeout = "1.5s"
        budget = { kind = "token_bucket", capacity = 500, cost_all = 14, cost = { rate_limit = 5 }, success_reward = 1, refund_on_success = true }
        circuit_breaker = { failure_rate = 0.25, min_calls = 4, window = "1m", open_for = "5s", probe_timeout = "2s", probes = 2, trip_on = ["server_error"] }
    "#;
    let config: RetryConfig = from_toml(text).unwrap();
    let mut expected = RetryConfig::default();
    expected.operation = Some("fetch".into());
    expected.max_attempts = NonZeroU32::new(5);
    expected.deadline = Some(Deadline::After(Duration::from_secs(90)));
    expected.max_server_delay = Some(Duration::from_secs(45));
    expected.max_unknown_retries = Some(UnknownRetries::NoCap);
    expected.strategy = Some(StrategyConfig::from(
        exponential()
            .base(Duration::from_millis(250))
            .max(Duration::from_secs(10))
            .factor(3.0),
    ));
    expected.strategy_for = BTreeMap::from([
        (
            ErrorClass::RateLimit,
            token_backoff().base(Duration::from_secs(1)).into(),
        ),
        (ErrorClass::Concurrency, no_delay().into()),
    ]);
    expected.max_retries_for =
        BTreeMap::from([(ErrorClass::RateLimit, 2), (ErrorClass::ServerError, 0)]);
    expected.seed = Some(42);
    expected.attempt_timeout = Some(Duration::from_millis(1500));
    expected.budget = Some(NamedOr::Inline(BudgetConfig::TokenBucket {
        capacity: 500.0,
        cost_all: Some(14.0),
        cost: BTreeMap::from([(ErrorClass::RateLimit, 5.0)]),
        failure_charge: None,
        success_reward: Some(1.0),
        refund_on_success: Some(true),
        retry_above: None,
    }));
    let mut breaker = BreakerConfig::default();
    breaker.failure_rate = Some(0.25);
    breaker.min_calls = Some(4);
    breaker.window = Some(Duration::from_secs(60));
    breaker.open_for = Some(Duration::from_secs(5));
    breaker.probe_timeout = Some(Duration::from_secs(2));
    breaker.probes = Some(2);
    breaker.trip_on = Some(vec![ErrorClass::ServerError]);
    expected.circuit_breaker = Some(NamedOr::Inline(breaker));
    assert_eq!(config, expected);

    // The same in JSON.
    let json = serde_json::to_string(&config).unwrap();
    assert_eq!(from_json::<RetryConfig>(&json).unwrap(), expected);
}

#[test]
fn durations_are_written_as_people_write_them() {
    for (text, expected) in [
        ("250ms", Duration::from_millis(250)),
        ("30s", Duration::from_secs(30)),
        ("1m30s", Duration::from_secs(90)),
        ("1m 30s", Duration::from_secs(90)),
        ("1.5s", Duration::from_millis(1500)),
        ("2h", Duration::from_secs(7200)),
        ("100us", Duration::from_micros(100)),
    ] {
        let config: RetryConfig = from_toml(&format!("max_server_delay = \"{text}\"")).unwrap();
        assert_eq!(config.max_server_delay, Some(expected), "{text}");
    }
    // Written back the same way.
    let mut config = RetryConfig::default();
    config.deadline = Some(Deadline::After(Duration::from_secs(90)));
    config.max_server_delay = Some(Duration::from_millis(250));
    assert_eq!(
        toml::to_string(&config).unwrap(),
        "deadline = \"1m 30s\"\nmax_server_delay = \"250ms\"\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Errors that name the key path and what was expected, in TOML and in JSON.

/// Checks that both inputs fail at `path` with a message containing `expected`.
fn assert_fails(toml_text: &str, json_text: &str, path: &str, expected: &str) {
    for (format, result) in [
        ("TOML", from_toml::<RetryConfigSet>(toml_text)),
        ("JSON", from_json::<RetryConfigSet>(json_text)),
    ] {
        let err = result.expect_err(format);
        assert_eq!(err.path(), path, "{format}: {err}");
        assert!(
            err.message().contains(expected),
            "{format}: {:?} does not contain {expected:?}",
            err.message()
        );
        assert!(err.to_string().starts_with(&format!("{path}: ")));
    }
}

#[test]
fn an_unknown_strategy_is_an_error_at_its_kind() {
    assert_fails(
        "[policies.fetch_user]\nstrategy = { kind = \"decorelated_jitter\", base = \"1s\" }",
        r#"{"policies": {"fetch_user": {"strategy": {"kind": "decorelated_jitter", "base": "1s"}}}}"#,
        "policies.fetch_user.strategy.kind",
        "unknown strategy `decorelated_jitter`, expected `decorrelated_jitter`, `equal_jitter`, \
         `token_backoff`, `full_jitter`, `exponential`, `constant` or `no_delay`",
    );
    assert_fails(
        "[policies.a]\nstrategy_for.rate_limit = { kind = \"linear\" }",
        r#"{"policies": {"a": {"strategy_for": {"rate_limit": {"kind": "linear"}}}}}"#,
        "policies.a.strategy_for.rate_limit.kind",
        "unknown strategy `linear`",
    );
}

#[test]
fn zero_attempts_is_an_error_at_max_attempts() {
    assert_fails(
        "[policies.fetch_user]\nmax_attempts = 0",
        r#"{"policies": {"fetch_user": {"max_attempts": 0}}}"#,
        "policies.fetch_user.max_attempts",
        "invalid value: integer `0`, expected a number of attempts from 1 to 4294967295",
    );
    assert_fails(
        "[policies.a]\nmax_attempts = -3",
        r#"{"policies": {"a": {"max_attempts": -3}}}"#,
        "policies.a.max_attempts",
        "integer `-3`, expected a number of attempts",
    );
}

#[test]
fn a_negative_duration_is_an_error_at_its_key() {
    assert_fails(
        "[policies.a]\ndeadline = \"-1s\"",
        r#"{"policies": {"a": {"deadline": "-1s"}}}"#,
        "policies.a.deadline",
        "invalid duration \"-1s\": a duration cannot be negative; expected a duration such as \
         \"250ms\", \"30s\" or \"1m30s\"",
    );
    assert_fails(
        "[circuit_breakers.db]\nopen_for = \"-250ms\"",
        r#"{"circuit_breakers": {"db": {"open_for": "-250ms"}}}"#,
        "circuit_breakers.db.open_for",
        "a duration cannot be negative",
    );
    assert_fails(
        "[policies.a]\nstrategy = { kind = \"full_jitter\", max = \"-5s\" }",
        r#"{"policies": {"a": {"strategy": {"kind": "full_jitter", "max": "-5s"}}}}"#,
        "policies.a.strategy.max",
        "a duration cannot be negative",
    );
}

#[test]
fn malformed_and_zero_durations_are_errors_at_their_key() {
    assert_fails(
        "[policies.a]\nstrategy = { kind = \"constant\", delay = \"1 fortnight\" }",
        r#"{"policies": {"a": {"strategy": {"kind": "constant", "delay": "1 fortnight"}}}}"#,
        "policies.a.strategy.delay",
        "invalid duration \"1 fortnight\" (unknown time unit \"fortnight\"",
    );
    assert_fails(
        "[policies.a]\nmax_server_delay = 30",
        r#"{"policies": {"a": {"max_server_delay": 30}}}"#,
        "policies.a.max_server_delay",
        "invalid type: integer `30`, expected a duration greater than zero, such as \"250ms\"",
    );
    assert_fails(
        "[policies.a]\ndeadline = \"0s\"",
        r#"{"policies": {"a": {"deadline": "0s"}}}"#,
        "policies.a.deadline",
        "invalid duration \"0s\": must be greater than zero",
    );
}

#[test]
fn an_unknown_class_is_an_error_at_its_key() {
    let classes = "expected `auth`, `permission`, `permanent`, `concurrency`, `rate_limit`, \
                   `server_error`, `transient` or `unknown`";
    assert_fails(
        "[policies.a]\nmax_retries_for.rate_limt = 2",
        r#"{"policies": {"a": {"max_retries_for": {"rate_limt": 2}}}}"#,
        "policies.a.max_retries_for.rate_limt",
        &format!("unknown error class `rate_limt`, {classes}"),
    );
    assert_fails(
        "[policies.a]\nstrategy_for.throttled = { kind = \"no_delay\" }",
        r#"{"policies": {"a": {"strategy_for": {"throttled": {"kind": "no_delay"}}}}}"#,
        "policies.a.strategy_for.throttled",
        "unknown error class `throttled`",
    );
    assert_fails(
        "[circuit_breakers.db]\ntrip_on = [\"server_error\", \"timeout\"]",
        r#"{"circuit_breakers": {"db": {"trip_on": ["server_error", "timeout"]}}}"#,
        "circuit_breakers.db.trip_on[1]",
        "unknown error class `timeout`",
    );
    assert_fails(
        "[budgets.db]\nkind = \"ratio\"\npercent = 10\ncost = { ratelimit = 0 }",
        r#"{"budgets": {"db": {"kind": "ratio", "percent": 10, "cost": {"ratelimit": 0}}}}"#,
        "budgets.db.cost.ratelimit",
        "unknown error class `ratelimit`",
    );
}

#[test]
fn a_misspelt_key_is_an_error() {
    assert_fails(
        "[policies.a]\nmax_atempts = 3",
        r#"{"policies": {"a": {"max_atempts": 3}}}"#,
        "policies.a.max_atempts",
        "unknown field `max_atempts`, expected one of `operation`, `max_attempts`",
    );
    assert_fails(
        "[polices.a]\nmax_attempts = 3",
        r#"{"polices": {"a": {"max_attempts": 3}}}"#,
        "polices",
        "unknown field `polices`, expected one of `budgets`, `circuit_breakers`, `policies`",
    );
    assert_fails(
        "[circuit_breakers.db]\nfailure_ratio = 0.5",
        r#"{"circuit_breakers": {"db": {"failure_ratio": 0.5}}}"#,
        "circuit_breakers.db.failure_ratio",
        "unknown field `failure_ratio`",
    );
    assert_fails(
        "[policies.a]\nstrategy = { kind = \"full_jitter\", bsae = \"1s\" }",
        r#"{"policies": {"a": {"strategy": {"kind": "full_jitter", "bsae": "1s"}}}}"#,
        "policies.a.strategy.bsae",
        "unknown field `bsae`",
    );
}

#[test]
fn a_setting_of_another_kind_is_an_error() {
    assert_fails(
        "[policies.a]\nstrategy = { kind = \"decorrelated_jitter\", factor = 2 }",
        r#"{"policies": {"a": {"strategy": {"kind": "decorrelated_jitter", "factor": 2}}}}"#,
        "policies.a.strategy",
        "`factor` is not a setting of `decorrelated_jitter`, which takes `base` and `max`",
    );
    assert_fails(
        "[policies.a]\nstrategy = { kind = \"constant\" }",
        r#"{"policies": {"a": {"strategy": {"kind": "constant"}}}}"#,
        "policies.a.strategy",
        "`constant` needs `delay`",
    );
    assert_fails(
        "[budgets.db]\nkind = \"ratio\"\ncapacity = 10",
        r#"{"budgets": {"db": {"kind": "ratio", "capacity": 10}}}"#,
        "budgets.db",
        "`capacity` is not a setting of `ratio`, which takes `percent`, `min_retries_per_sec`, \
         `window` and `cost`",
    );
    assert_fails(
        "[budgets.db]\nkind = \"grpc\"\nmax_tokens = 10",
        r#"{"budgets": {"db": {"kind": "grpc", "max_tokens": 10}}}"#,
        "budgets.db",
        "`grpc` needs `token_ratio`",
    );
    assert_fails(
        "[budgets.db]\nkind = \"leaky\"",
        r#"{"budgets": {"db": {"kind": "leaky"}}}"#,
        "budgets.db.kind",
        "unknown budget kind `leaky`, expected `ratio`, `token_bucket`, `aws_standard` or `grpc`",
    );
    assert_fails(
        "[policies.a]\nbudget = 3",
        r#"{"policies": {"a": {"budget": 3}}}"#,
        "policies.a.budget",
        "invalid type: integer `3`, expected the name of an entry declared in the \
         configuration, or a table of settings",
    );
    assert_fails(
        "[policies.a]\nmax_unknown_retries = \"all\"",
        r#"{"policies": {"a": {"max_unknown_retries": "all"}}}"#,
        "policies.a.max_unknown_retries",
        "expected a number of retries (0 or more), or \"none\" for no cap of their own",
    );
}

// ---------------------------------------------------------------------------------------------
// Building: the builder's own checks, named entries, unknown names.

#[test]
fn limits_the_builders_check_are_config_errors_naming_the_entry() {
    let set: RetryConfigSet = from_toml(
        r#"
        [budgets.db]
        kind = "ratio"
        percent = 2000

        [circuit_breakers.db]
        failure_rate = 1.5

        [policies.fetch]
        strategy = { kind = "exponential", factor = 0.5 }
        budget = "db"
        circuit_breaker = "db"
        "#,
    )
    .unwrap();
    let err = Policies::from_config(&set).unwrap_err();
    let entries: Vec<(String, &str)> = err
        .problems()
        .iter()
        .map(|p| match p {
            ConfigProblem::InEntry { entry, problem } => (entry.clone(), problem.setting()),
            other => panic!("not in an entry: {other}"),
        })
        .collect();
    // Budget and breaker named but invalid: reported where they are declared, not as unknown.
    assert_eq!(
        entries,
        [
            ("budgets.db".to_owned(), "percent"),
            ("circuit_breakers.db".to_owned(), "failure_rate"),
            ("policies.fetch".to_owned(), "strategy"),
        ]
    );
    assert_eq!(
        err.to_string(),
        "invalid retry policy: in `budgets.db`: `percent` must be a number in [0, 1000] (got \
         2000); in `circuit_breakers.db`: `failure_rate` must be in (0, 1] (got 1.5); in \
         `policies.fetch`: `strategy` is invalid: the exponential factor must be finite and at \
         least 1 (got 0.5)"
    );
}

#[test]
fn unknown_names_are_typed_errors() {
    let set: RetryConfigSet = from_toml(
        r#"
        [budgets.users_db]
        kind = "aws_standard"

        [policies.fetch]
        budget = "user_db"
        circuit_breaker = "users_db"
        "#,
    )
    .unwrap();
    let err = Policies::from_config(&set).unwrap_err();
    let unknown = |setting: &'static str, name: &str| ConfigProblem::InEntry {
        entry: "policies.fetch".into(),
        problem: Box::new(ConfigProblem::UnknownName {
            setting,
            name: name.into(),
        }),
    };
    assert_eq!(
        err.problems(),
        [
            unknown("budget", "user_db"),
            unknown("circuit_breaker", "users_db")
        ]
    );

    // An unknown policy.
    let policies = Policies::from_config(&RetryConfigSet::default()).unwrap();
    let err = policies.builder::<io::Error>("fetch").unwrap_err();
    assert_eq!(
        err.problems(),
        [ConfigProblem::UnknownName {
            setting: "policy",
            name: "fetch".into()
        }]
    );
    assert_eq!(
        err.to_string(),
        "invalid retry policy: `policy` names `fetch`, which the configuration does not declare"
    );
    assert!(policies.async_builder::<io::Error>("fetch").is_err());

    // A name in a configuration built on its own: there is nothing to find it in.
    let config: RetryConfig = from_toml("budget = \"users_db\"").unwrap();
    let err = RetryPolicy::<io::Error>::from_config(&config).unwrap_err();
    assert_eq!(
        err.problems(),
        [ConfigProblem::UnknownName {
            setting: "budget",
            name: "users_db".into()
        }]
    );
    assert!(AsyncRetryPolicy::<io::Error>::from_config(&config).is_err());
}

#[test]
fn an_attempt_timeout_needs_an_async_policy() {
    let config: RetryConfig = from_toml("attempt_timeout = \"2s\"").unwrap();
    let err = RetryPolicy::<io::Error>::from_config(&config).unwrap_err();
    assert_eq!(err.problems()[0].setting(), "attempt_timeout");
    assert!(
        err.to_string().contains("applies only to async policies"),
        "{err}"
    );
    let policy = AsyncRetryPolicy::<io::Error>::from_config(&config)
        .unwrap()
        .build()
        .unwrap();
    assert!(policy.describe().contains("attempt timeout: 2s"));
}

#[test]
fn from_config_reports_every_problem_at_once() {
    let mut config: RetryConfig = from_toml(
        r#"
        attempt_timeout = "2s"
        strategy = { kind = "exponential", factor = 0.5 }
        budget = { kind = "ratio", percent = -1 }
        circuit_breaker = { probes = 0 }
        "#,
    )
    .unwrap();
    config.max_server_delay = Some(Duration::ZERO); // possible in code only
    let err = RetryPolicy::<io::Error>::from_config(&config).unwrap_err();
    let settings: Vec<&str> = err.problems().iter().map(ConfigProblem::setting).collect();
    assert_eq!(
        settings,
        [
            "percent",
            "probes",
            "max_server_delay",
            "strategy",
            "attempt_timeout"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Shared budgets and breakers.

const SHARED_BUDGET: &str = r#"
    [budgets.users_db]
    kind = "token_bucket"
    capacity = 2

    [policies.fetch_user]
    strategy = { kind = "no_delay" }
    budget = "users_db"

    [policies.save_user]
    strategy = { kind = "no_delay" }
    max_attempts = 2
    budget = "users_db"

    [policies.own_budget]
    strategy = { kind = "no_delay" }
    max_attempts = 2
    budget = { kind = "token_bucket", capacity = 1 }
"#;

#[test]
fn policies_naming_a_budget_share_it() {
    let policies = Policies::from_config(&from_toml(SHARED_BUDGET).unwrap()).unwrap();
    let fetch = policies
        .builder::<io::Error>("fetch_user")
        .unwrap()
        .build()
        .unwrap();
    let save = policies
        .async_builder::<io::Error>("save_user")
        .unwrap()
        .build()
        .unwrap();
    // fetch_user takes both tokens (2 retries)...
    let err = fetch.execute(|| Err::<(), _>(timed_out())).unwrap_err();
    assert_eq!(
        (err.stop_reason(), err.attempts()),
        (StopReason::BudgetExhausted, 3)
    );
    // ...so save_user, sharing the budget, cannot retry at all.
    let err = futures::executor::block_on(save.execute(|| async { Err::<(), _>(timed_out()) }))
        .unwrap_err();
    assert_eq!(
        (err.stop_reason(), err.attempts()),
        (StopReason::BudgetExhausted, 1)
    );
    assert!(policies.budget("users_db").unwrap().available() < f64::EPSILON);

    // Another registry built from the same file has budgets of its own.
    let other = Policies::from_config(&from_toml(SHARED_BUDGET).unwrap()).unwrap();
    assert!((other.budget("users_db").unwrap().available() - 2.0).abs() < f64::EPSILON);
}

#[test]
fn an_inline_budget_is_shared_by_the_policies_of_its_entry_only() {
    let policies = Policies::from_config(&from_toml(SHARED_BUDGET).unwrap()).unwrap();
    let first = policies
        .builder::<io::Error>("own_budget")
        .unwrap()
        .build()
        .unwrap();
    let second = policies
        .builder::<io::Error>("own_budget")
        .unwrap()
        .build()
        .unwrap();
    let err = first.execute(|| Err::<(), _>(timed_out())).unwrap_err();
    assert_eq!(
        (err.stop_reason(), err.attempts()),
        (StopReason::MaxAttempts, 2)
    );
    // The entry's one token is spent: the second policy of the same entry cannot retry.
    let err = second.execute(|| Err::<(), _>(timed_out())).unwrap_err();
    assert_eq!(
        (err.stop_reason(), err.attempts()),
        (StopReason::BudgetExhausted, 1)
    );
    // The named budget is another budget.
    assert!((policies.budget("users_db").unwrap().available() - 2.0).abs() < f64::EPSILON);
}

const SHARED_BREAKER: &str = r#"
    [circuit_breakers.users_db]
    min_calls = 1
    open_for = "1h"

    [policies.fetch_user]
    strategy = { kind = "no_delay" }
    circuit_breaker = "users_db"

    [policies.save_user]
    strategy = { kind = "no_delay" }
    circuit_breaker = "users_db"
"#;

#[test]
fn policies_naming_a_breaker_share_it() {
    let policies = Policies::from_config(&from_toml(SHARED_BREAKER).unwrap()).unwrap();
    let fetch = policies
        .builder::<io::Error>("fetch_user")
        .unwrap()
        .build()
        .unwrap();
    let save = policies
        .async_builder::<io::Error>("save_user")
        .unwrap()
        .build()
        .unwrap();
    let breaker = policies.circuit_breaker("users_db").unwrap();
    assert_eq!(breaker.state(), CircuitState::Closed);

    // One failure of fetch_user opens the shared circuit (min_calls = 1)...
    let err = fetch.execute(|| Err::<(), _>(timed_out())).unwrap_err();
    assert_eq!(err.stop_reason(), StopReason::CircuitOpen);
    assert_eq!(breaker.state(), CircuitState::Open);
    // ...and save_user's calls are rejected without calling the operation.
    let mut called = false;
    let err = futures::executor::block_on(save.execute(|| {
        called = true;
        async { Ok::<_, io::Error>(()) }
    }))
    .unwrap_err();
    assert_eq!(
        (err.stop_reason(), err.attempts(), called),
        (StopReason::CircuitOpen, 0, false)
    );
}

// ---------------------------------------------------------------------------------------------
// Agreement with the builder, and describe().

#[test]
fn a_configured_policy_is_the_policy_the_builder_builds() {
    let config: RetryConfig = from_toml(
        r#"
        operation = "fetch"
        max_attempts = 5
        deadline = "none"
        max_unknown_retries = 1
        strategy = { kind = "exponential", base = "100ms", max = "1s", factor = 3 }
        strategy_for.rate_limit = { kind = "token_backoff", base = "2s" }
        max_retries_for.rate_limit = 3
        seed = 7
        "#,
    )
    .unwrap();
    let by_hand = |b: reflexio::RetryPolicyBuilder<io::Error>| {
        b.operation("fetch")
            .max_attempts(5)
            .no_deadline()
            .max_unknown_retries(Some(1))
            .strategy(
                exponential()
                    .base(Duration::from_millis(100))
                    .max(Duration::from_secs(1))
                    .factor(3.0),
            )
            .strategy_for(
                ErrorClass::RateLimit,
                token_backoff().base(Duration::from_secs(2)),
            )
            .max_retries_for(ErrorClass::RateLimit, 3)
            .seed(7)
    };
    // `Other` errors are rate limits here, timeouts transient.
    let classify = |e: &io::Error| match e.kind() {
        io::ErrorKind::Other => ErrorClass::RateLimit,
        _ => ErrorClass::Transient,
    };
    let (clock_a, clock_b) = (VirtualClock::new(), VirtualClock::new());
    let configured = RetryPolicy::<io::Error>::from_config(&config)
        .unwrap()
        .classifier(classify)
        .clock(clock_a.clone())
        .build()
        .unwrap();
    let built = by_hand(RetryPolicy::builder())
        .classifier(classify)
        .clock(clock_b.clone())
        .build()
        .unwrap();
    assert_eq!(configured.describe(), built.describe());
    for policy in [&configured, &built] {
        let _ = policy.call(|| Err::<(), _>(timed_out()));
        let _ = policy.call(|| Err::<(), _>(io::Error::other("rate limited: 429")));
    }
    assert_eq!(clock_a.sleeps(), clock_b.sleeps());
    let sleeps = clock_a.sleeps();
    assert_eq!(sleeps.len(), 4 + 3); // 4 retries of timeouts, 3 (the cap) of rate limits
    assert_eq!(
        sleeps[..4],
        [100, 300, 900, 1000].map(Duration::from_millis)
    );
    // Token backoff from 2 s: the first delay is in [1.5 s, 3 s] (cap 2 s × 1.5).
    assert!((Duration::from_millis(1500)..=Duration::from_secs(3)).contains(&sleeps[4]));
}

#[test]
fn a_policy_gets_its_name_from_the_registry() {
    let set: RetryConfigSet =
        from_toml("[policies.fetch_user]\n[policies.save_user]\noperation = \"users.save\"")
            .unwrap();
    let policies = Policies::from_config(&set).unwrap();
    assert_eq!(
        policies.names().collect::<Vec<_>>(),
        ["fetch_user", "save_user"]
    );
    let describe = |name| {
        policies
            .builder::<io::Error>(name)
            .unwrap()
            .build()
            .unwrap()
            .describe()
    };
    assert!(describe("fetch_user").starts_with("retry policy `fetch_user`\n"));
    assert!(describe("save_user").starts_with("retry policy `users.save`\n"));
    // An empty entry is the builder's defaults.
    let defaults = RetryPolicy::<io::Error>::builder()
        .operation("fetch_user")
        .build()
        .unwrap();
    assert_eq!(describe("fetch_user"), defaults.describe());
}

#[test]
fn code_adds_what_is_not_data() {
    let config: RetryConfig =
        from_toml("max_attempts = 3\nstrategy = { kind = \"constant\", delay = \"10ms\" }")
            .unwrap();
    let clock = VirtualClock::new();
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let policy = RetryPolicy::<io::Error>::from_config(&config)
        .unwrap()
        .classifier(|_: &io::Error| ErrorClass::Transient)
        .retry_if_ok(|status: &u16| (*status >= 500).then_some(ErrorClass::ServerError))
        .on_event(move |e| sink.lock().unwrap().push(e.kind))
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut replies = [503, 502, 200].into_iter();
    assert_eq!(policy.call(|| Ok(replies.next().unwrap())).unwrap(), 200);
    assert_eq!(clock.sleeps(), [Duration::from_millis(10); 2]);
    assert_eq!(events.lock().unwrap().len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Round trip: a configuration written out and read back is the same, and builds the same
// policies (compared by their describe()), in TOML and in JSON.

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..100_000).prop_map(Duration::from_millis),
        (0u64..100_000).prop_map(Duration::from_secs),
        (0u64..10_000_000_000_000).prop_map(Duration::from_nanos),
    ]
}

fn positive() -> impl Strategy<Value = Duration> {
    duration().prop_map(|d| d.max(Duration::from_nanos(1)))
}

fn class() -> impl Strategy<Value = ErrorClass> {
    prop::sample::select(ErrorClass::ALL.to_vec())
}

fn strategy() -> BoxedStrategy<StrategyConfig> {
    let base_max = || (prop::option::of(duration()), prop::option::of(duration()));
    /// The strategy `$s` with the base and max given.
    macro_rules! with {
        ($s:expr, $base:expr, $max:expr) => {{
            let mut s = $s;
            if let Some(base) = $base {
                s = s.base(base);
            }
            if let Some(max) = $max {
                s = s.max(max);
            }
            StrategyConfig::from(s)
        }};
    }
    prop_oneof![
        base_max().prop_map(|(base, max)| with!(decorrelated_jitter(), base, max)),
        base_max().prop_map(|(base, max)| with!(equal_jitter(), base, max)),
        base_max().prop_map(|(base, max)| with!(token_backoff(), base, max)),
        base_max().prop_map(|(base, max)| with!(full_jitter(), base, max)),
        (base_max(), 1.0f64..100.0).prop_map(|((base, max), factor)| with!(
            exponential().factor(factor),
            base,
            max
        )),
        (duration(), prop::option::of(duration())).prop_map(|(delay, max)| with!(
            constant(delay),
            None,
            max
        )),
        Just(no_delay().into()),
    ]
    .boxed()
}

fn costs() -> impl Strategy<Value = BTreeMap<ErrorClass, f64>> {
    prop::collection::btree_map(class(), 0.0f64..1e6, 0..3)
}

fn budget() -> BoxedStrategy<BudgetConfig> {
    prop_oneof![
        (
            prop_oneof![Just(0.0), 0.001f64..1000.0],
            prop::option::of(0u32..1000),
            prop::option::of((1u64..3_600_000).prop_map(Duration::from_millis)),
            costs(),
        )
            .prop_map(|(percent, min_retries_per_sec, window, cost)| {
                BudgetConfig::Ratio {
                    percent,
                    min_retries_per_sec,
                    window,
                    cost,
                }
            }),
        (
            (1.0f64..1e9, prop::option::of(0.0f64..1e6), costs()),
            (
                prop::option::of(0.0f64..1e3),
                prop::option::of(0.0f64..1e3),
                prop::option::of(any::<bool>()),
                prop::option::of(0.0f64..1e3),
            ),
        )
            .prop_map(
                |(
                    (capacity, cost_all, cost),
                    (failure_charge, success_reward, refund_on_success, retry_above),
                )| BudgetConfig::TokenBucket {
                    capacity,
                    cost_all,
                    cost,
                    failure_charge,
                    success_reward,
                    refund_on_success,
                    retry_above,
                }
            ),
        Just(BudgetConfig::AwsStandard),
        (0.001f64..=1000.0, 0.001f64..10.0).prop_map(|(max_tokens, token_ratio)| {
            BudgetConfig::Grpc {
                max_tokens,
                token_ratio,
            }
        }),
    ]
    .boxed()
}

fn breaker() -> BoxedStrategy<BreakerConfig> {
    (
        (
            prop::option::of((1u32..=100).prop_map(|p| f64::from(p) / 100.0)),
            prop::option::of(1u32..1000),
            prop::option::of((1u64..3_600_000).prop_map(Duration::from_millis)),
        ),
        (
            prop::option::of(positive()),
            prop::option::of(positive()),
            prop::option::of(1u32..100),
            prop::option::of(prop::collection::vec(class(), 0..4)),
        ),
    )
        .prop_map(
            |((failure_rate, min_calls, window), (open_for, probe_timeout, probes, trip_on))| {
                let mut b = BreakerConfig::default();
                b.failure_rate = failure_rate;
                b.min_calls = min_calls;
                b.window = window;
                b.open_for = open_for;
                b.probe_timeout = probe_timeout;
                b.probes = probes;
                b.trip_on = trip_on;
                b
            },
        )
        .boxed()
}

/// A budget or breaker: one of the declared names, or inline settings.
fn named_or<T: std::fmt::Debug + Clone + 'static>(
    inline: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<NamedOr<T>> {
    prop_oneof![
        prop::sample::select(vec!["a", "b"]).prop_map(|n| NamedOr::Named(n.to_owned())),
        inline.prop_map(NamedOr::Inline),
    ]
    .boxed()
}

fn policy() -> BoxedStrategy<RetryConfig> {
    (
        (
            prop::option::of("[a-z_.]{1,12}"),
            prop::option::of((1u32..100).prop_map(|n| NonZeroU32::new(n).unwrap())),
            prop::option::of(prop_oneof![
                Just(Deadline::Off),
                positive().prop_map(Deadline::After)
            ]),
            prop::option::of(positive()),
            prop::option::of(prop_oneof![
                Just(UnknownRetries::NoCap),
                (0u32..10).prop_map(UnknownRetries::AtMost)
            ]),
        ),
        (
            prop::option::of(strategy()),
            prop::collection::btree_map(class(), strategy(), 0..3),
            prop::collection::btree_map(class(), 0u32..10, 0..3),
            // TOML integers are signed 64-bit.
            prop::option::of(0..=i64::MAX.cast_unsigned()),
            prop::option::of(positive()),
            prop::option::of(named_or(budget())),
            prop::option::of(named_or(breaker())),
        ),
    )
        .prop_map(
            |(
                (operation, max_attempts, deadline, max_server_delay, max_unknown_retries),
                (strategy, strategy_for, max_retries_for, seed, attempt_timeout, budget, breaker),
            )| {
                let mut c = RetryConfig::default();
                c.operation = operation;
                c.max_attempts = max_attempts;
                c.deadline = deadline;
                c.max_server_delay = max_server_delay;
                c.max_unknown_retries = max_unknown_retries;
                c.strategy = strategy;
                c.strategy_for = strategy_for;
                c.max_retries_for = max_retries_for;
                c.seed = seed;
                c.attempt_timeout = attempt_timeout;
                c.budget = budget;
                c.circuit_breaker = breaker;
                c
            },
        )
        .boxed()
}

fn config_set() -> BoxedStrategy<RetryConfigSet> {
    (
        budget(),
        budget(),
        breaker(),
        breaker(),
        prop::collection::btree_map("[a-z_]{1,10}", policy(), 0..4),
    )
        .prop_map(|(a, b, breaker_a, breaker_b, policies)| {
            let mut set = RetryConfigSet::default();
            set.budgets = BTreeMap::from([("a".into(), a), ("b".into(), b)]);
            set.circuit_breakers =
                BTreeMap::from([("a".into(), breaker_a), ("b".into(), breaker_b)]);
            set.policies = policies;
            set
        })
        .boxed()
}

/// The `describe()` of every policy of `set`, built async (the kind every setting applies to).
fn describe_all(set: &RetryConfigSet) -> Vec<String> {
    let policies = Policies::from_config(set).expect("a valid configuration");
    policies
        .names()
        .map(|name| {
            policies
                .async_builder::<io::Error>(name)
                .and_then(reflexio::AsyncRetryPolicyBuilder::build)
                .expect("a valid policy")
                .describe()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_configuration_written_and_read_back_builds_the_same_policies(set in config_set()) {
        let described = describe_all(&set);
        prop_assert_eq!(described.len(), set.policies.len());

        let toml_text = toml::to_string(&set).expect("TOML");
        let from_toml: RetryConfigSet = from_toml(&toml_text).map_err(|e| {
            TestCaseError::fail(format!("{e}\n{toml_text}"))
        })?;
        prop_assert_eq!(&from_toml, &set);
        prop_assert_eq!(&describe_all(&from_toml), &described);

        let json_text = serde_json::to_string(&set).expect("JSON");
        let from_json: RetryConfigSet = from_json(&json_text).map_err(|e| {
            TestCaseError::fail(format!("{e}\n{json_text}"))
        })?;
        prop_assert_eq!(&from_json, &set);
        prop_assert_eq!(&describe_all(&from_json), &described);
    }

    #[test]
    fn a_policy_written_and_read_back_is_the_same_policy(config in policy()) {
        let mut config = config;
        // On its own, a policy cannot name a budget or a breaker.
        if matches!(config.budget, Some(NamedOr::Named(_))) {
            config.budget = None;
        }
        if matches!(config.circuit_breaker, Some(NamedOr::Named(_))) {
            config.circuit_breaker = None;
        }
        let described = AsyncRetryPolicy::<io::Error>::from_config(&config)
            .and_then(reflexio::AsyncRetryPolicyBuilder::build)
            .expect("a valid policy")
            .describe();
        let text = toml::to_string(&config).expect("TOML");
        let back: RetryConfig = from_toml(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&back, &config);
        let again = AsyncRetryPolicy::<io::Error>::from_config(&back)
            .and_then(reflexio::AsyncRetryPolicyBuilder::build)
            .expect("a valid policy")
            .describe();
        prop_assert_eq!(again, described);
    }
}

// ---------------------------------------------------------------------------------------------
// #[retry] with a policy from the configuration.

/// Loaded at start-up (here, by the test).
static POLICIES: OnceLock<Policies> = OnceLock::new();

/// Built from the registry when `fetch_user` is first called.
static FETCH_USER: LazyLock<RetryPolicy<io::Error>> = LazyLock::new(|| {
    let policies = POLICIES.get().expect("policies loaded at start-up");
    policies
        .builder("fetch_user")
        .and_then(reflexio::RetryPolicyBuilder::build)
        .expect("a valid policy")
});

#[retry(policy = FETCH_USER)]
fn fetch_user(calls: &mut u32) -> io::Result<u32> {
    *calls += 1;
    if *calls < 3 {
        Err(timed_out())
    } else {
        Ok(*calls)
    }
}

#[test]
fn retry_attributes_use_policies_from_the_configuration() {
    let set: RetryConfigSet = from_toml(
        r#"
        [budgets.users_db]
        kind = "token_bucket"
        capacity = 3

        [policies.fetch_user]
        max_attempts = 4
        strategy = { kind = "no_delay" }
        budget = "users_db"
        "#,
    )
    .unwrap();
    POLICIES
        .set(Policies::from_config(&set).unwrap())
        .expect("set once");
    let mut calls = 0;
    assert_eq!(fetch_user(&mut calls).unwrap(), 3);
    // Two retries taken from the shared budget.
    let budget = POLICIES.get().unwrap().budget("users_db").unwrap();
    assert!((budget.available() - 1.0).abs() < f64::EPSILON);
    assert!(
        FETCH_USER
            .describe()
            .starts_with("retry policy `fetch_user`\n  max attempts: 4")
    );
}

#[test]
fn strategy_kinds_are_the_constructors() {
    let config: RetryConfig = from_toml(
        r#"
        strategy = { kind = "constant", delay = "250ms" }
        strategy_for.concurrency = { kind = "no_delay" }
        "#,
    )
    .unwrap();
    let built = RetryPolicy::<io::Error>::builder()
        .strategy(constant(Duration::from_millis(250)))
        .strategy_for(ErrorClass::Concurrency, no_delay())
        .build()
        .unwrap();
    let configured = RetryPolicy::<io::Error>::from_config(&config)
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(configured.describe(), built.describe());
}

/// The README's example and the `config` module's are one example: the same file, the same
/// `describe()` output (each asserts its own).
#[test]
fn the_readme_and_the_module_docs_show_the_same_example() {
    fn example(text: &str) -> &str {
        let start = text.find("const RETRY_TOML").expect("the example's start");
        let end = start + text[start..].find("\n# Ok::<").expect("the example's end");
        &text[start..end]
    }
    let readme = include_str!("../README.md");
    let module: String = include_str!("../reflexio-core/src/config/mod.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("//! ").or_else(|| l.strip_prefix("//!")))
        .flat_map(|l| [l, "\n"])
        .collect();
    let module = module.replace("reflexio_core::", "reflexio::");
    assert_eq!(example(readme), example(&module));
    assert!(example(readme).contains("assert_eq!(fetch_user.describe(), "));
}
