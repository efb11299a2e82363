//! Golden vectors from the Python original and envelope properties up to `u32::MAX`.

use super::Strategy;
use super::{
    BackoffContext, Duration, ErrorClass, constant, decorrelated_jitter, equal_jitter, exponential,
    full_jitter, no_delay, token_backoff,
};
use proptest::prelude::{Just, any, prop_assert, prop_assert_eq, prop_oneof, proptest};
use proptest::strategy::Strategy as _;

fn ms(x: f64) -> Duration {
    Duration::from_secs_f64(x)
}

fn assert_close(got: &[Duration], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g.as_secs_f64() - w).abs() < 1e-6,
            "delay {i}: got {g:?}, want {w}s"
        );
    }
}

/// Delays for attempts 1..=8 with `prev` fed back, as the Python reference computes them.
fn sequence(s: &dyn Strategy, u: f64) -> Vec<Duration> {
    let mut prev = None;
    (1..=8)
        .map(|attempt| {
            let mut ctx = BackoffContext::new(attempt, ErrorClass::Transient);
            ctx.prev_delay = prev;
            let d = s.delay(&ctx, u);
            prev = Some(d);
            d
        })
        .collect()
}

#[test]
fn midpoint_golden_vectors_match_the_python_original() {
    assert_close(
        &sequence(&decorrelated_jitter(), 0.5),
        &[
            0.5,
            0.875,
            1.4375,
            2.28125,
            3.546_875,
            5.445_312_5,
            8.292_968_75,
            12.564_453_125,
        ],
    );
    assert_close(
        &sequence(&equal_jitter(), 0.5),
        &[0.375, 0.75, 1.5, 3.0, 6.0, 12.0, 22.5, 22.5],
    );
    assert_close(
        &sequence(&token_backoff(), 0.5),
        &[
            0.281_25,
            0.421_875,
            0.632_812_5,
            0.949_218_75,
            1.423_828_125,
            2.135_742_187_5,
            3.203_613_281_25,
            4.805_419_921_875,
        ],
    );
}

#[test]
fn upper_and_lower_envelopes_match_the_python_original() {
    let top = 1.0 - f64::EPSILON;
    let up = sequence(&decorrelated_jitter(), top);
    assert_close(&up, &[0.75, 2.25, 6.75, 20.25, 30.0, 30.0, 30.0, 30.0]);
    assert_close(
        &sequence(&equal_jitter(), top),
        &[0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0],
    );
    assert_close(
        &sequence(&token_backoff(), top),
        &[
            0.375,
            0.5625,
            0.843_75,
            1.265_625,
            1.898_437_5,
            2.847_656_25,
            4.271_484_375,
            6.407_226_562_5,
        ],
    );
    assert_close(&sequence(&decorrelated_jitter(), 0.0), &[0.25; 8]);
}

#[test]
fn decorrelated_jitter_never_goes_below_base() {
    // The Python original gives uniform(0.25, 0.03), i.e. below base, for prev = 10 ms.
    let s = decorrelated_jitter();
    let ctx = BackoffContext::new(3, ErrorClass::Transient).with_prev_delay(ms(0.01));
    for u in [0.0, 0.3, 0.999] {
        assert_eq!(s.delay(&ctx, u), ms(0.25));
    }
    // max below base: always max.
    let tight = decorrelated_jitter().max(ms(0.1));
    assert_eq!(tight.delay(&ctx, 0.7), ms(0.1));
}

#[test]
fn huge_attempts_and_durations_saturate_at_max() {
    let big = BackoffContext::new(u32::MAX, ErrorClass::Transient).with_prev_delay(Duration::MAX);
    assert_eq!(equal_jitter().delay(&big, 1.0), Duration::from_secs(30));
    assert_eq!(token_backoff().delay(&big, 1.0), Duration::from_secs(20));
    assert_eq!(equal_jitter().delay(&big, 0.0), Duration::from_secs(15));
    assert_eq!(full_jitter().delay(&big, 0.999).as_secs(), 29);
    assert_eq!(
        decorrelated_jitter().delay(&big, 0.999),
        Duration::from_secs(30)
    );
    assert_eq!(exponential().delay(&big, 0.5), Duration::from_secs(30));
    let unbounded = exponential().max(Duration::MAX).base(Duration::MAX);
    assert_eq!(unbounded.delay(&big, 0.5), Duration::MAX);
    let zero = equal_jitter().base(Duration::ZERO);
    assert_eq!(zero.delay(&big, 0.5), Duration::ZERO);
}

#[test]
fn exponential_validates_its_factor() {
    assert!(exponential().validate().is_ok());
    assert!(exponential().factor(1.0).validate().is_ok());
    for bad in [f64::NAN, f64::INFINITY, 0.5, -2.0] {
        assert!(exponential().factor(bad).validate().is_err(), "{bad}");
    }
}

#[test]
fn describe_names_parameters() {
    assert_eq!(
        decorrelated_jitter()
            .max(Duration::from_secs(5))
            .to_string(),
        "decorrelated_jitter(base 250ms, max 5s)"
    );
    assert_eq!(
        token_backoff().to_string(),
        "token_backoff(base 250ms, max 20s)"
    );
}

fn duration() -> impl proptest::strategy::Strategy<Value = Duration> {
    prop_oneof![
        (0u64..=120_000_000_000).prop_map(Duration::from_nanos),
        any::<u64>().prop_map(Duration::from_nanos),
        Just(Duration::ZERO),
        Just(Duration::MAX),
    ]
}

fn attempt() -> impl proptest::strategy::Strategy<Value = u32> {
    prop_oneof![1u32..=64, any::<u32>(), Just(u32::MAX)]
}

proptest! {
    #[test]
    fn decorrelated_stays_in_its_envelope(
        base in duration(), max in duration(), prev in proptest::option::of(duration()),
        attempt in attempt(), u in 0.0f64..1.0,
    ) {
        let s = decorrelated_jitter().base(base).max(max);
        let mut ctx = BackoffContext::new(attempt, ErrorClass::Transient);
        ctx.prev_delay = prev;
        let d = s.delay(&ctx, u);
        let upper = prev.unwrap_or(base).saturating_mul(3).max(base);
        prop_assert!(d <= max);
        prop_assert!(d >= base.min(max));
        prop_assert!(d <= upper.min(max));
        // Pure: the same inputs give the same delay, and u = 0 is the lower bound.
        prop_assert_eq!(d, s.delay(&ctx, u));
        prop_assert_eq!(s.delay(&ctx, 0.0), base.min(max));
    }

    #[test]
    fn equal_and_token_stay_in_cap_over_two_to_cap(
        base in duration(), max in duration(), attempt in attempt(), u in 0.0f64..1.0,
    ) {
        let ctx = BackoffContext::new(attempt, ErrorClass::ServerError);
        for (d, factor, d0, d1) in [
            (equal_jitter().base(base).max(max).delay(&ctx, u), 2.0f64,
             equal_jitter().base(base).max(max).delay(&ctx, 0.0),
             equal_jitter().base(base).max(max).delay(&ctx, 1.0)),
            (token_backoff().base(base).max(max).delay(&ctx, u), 1.5f64,
             token_backoff().base(base).max(max).delay(&ctx, 0.0),
             token_backoff().base(base).max(max).delay(&ctx, 1.0)),
        ] {
            let cap = Duration::try_from_secs_f64(base.as_secs_f64() * factor.powf(f64::from(attempt)))
                .unwrap_or(Duration::MAX)
                .min(max);
            let cap = if base.is_zero() { Duration::ZERO } else { cap };
            prop_assert!(d <= max);
            prop_assert!(d >= cap / 2 && d <= cap, "{d:?} not in [{:?}, {cap:?}]", cap / 2);
            prop_assert!(d0 <= d && d <= d1);
        }
    }

    #[test]
    fn full_jitter_exponential_constant_never_exceed_max(
        base in duration(), max in duration(), attempt in attempt(), u in 0.0f64..1.0,
        factor in 1.0f64..10.0,
    ) {
        let ctx = BackoffContext::new(attempt, ErrorClass::Unknown);
        prop_assert!(full_jitter().base(base).max(max).delay(&ctx, u) <= max);
        prop_assert_eq!(full_jitter().base(base).max(max).delay(&ctx, 0.0), Duration::ZERO);
        let e = exponential().base(base).max(max).factor(factor);
        prop_assert!(e.delay(&ctx, u) <= max);
        prop_assert!(e.delay(&ctx, u) >= base.min(max) || base.is_zero());
        prop_assert_eq!(constant(base).max(max).delay(&ctx, u), base.min(max));
        prop_assert_eq!(no_delay().delay(&ctx, u), Duration::ZERO);
    }

    #[test]
    fn out_of_range_u_is_clamped(u in any::<f64>(), attempt in attempt()) {
        let ctx = BackoffContext::new(attempt, ErrorClass::Transient);
        let d = equal_jitter().delay(&ctx, u);
        prop_assert!(d <= Duration::from_secs(30));
        let d = decorrelated_jitter().delay(&ctx, u);
        prop_assert!(d >= Duration::from_millis(250) && d <= Duration::from_millis(750));
    }
}

#[test]
#[allow(
    clippy::float_cmp,
    reason = "exact integers below 2^53 compared exactly"
)]
fn integer_caps_are_exact_and_the_powers_table_matches_powf() {
    // Factor 2 is a shift: exact for any base, even beyond f64's 2^53 ns.
    let base = Duration::from_nanos((1 << 60) + 1);
    let ctx = BackoffContext::new(3, ErrorClass::Transient);
    let wide = exponential().base(base).max(Duration::MAX);
    assert_eq!(wide.delay(&ctx, 0.5).as_nanos(), ((1u128 << 60) + 1) << 2);
    // Equal jitter's lower bound is half of the same exact cap.
    let equal = equal_jitter().base(base).max(Duration::MAX);
    assert_eq!(equal.delay(&ctx, 0.0).as_nanos(), ((1u128 << 60) + 1) << 2);
    // Token backoff's table of 1.5^n agrees with powf to the last bits, and exactly while
    // 3^n fits in 53 bits.
    for n in 0u32..192 {
        let got = super::POWERS_OF_1_5[n as usize];
        let want = 1.5f64.powf(f64::from(n));
        assert!(
            (got - want).abs() <= want * 1e-13,
            "1.5^{n}: {got} vs {want}"
        );
        if n <= 33 {
            assert_eq!(
                got * 2f64.powi(i32::try_from(n).unwrap()),
                3f64.powi(i32::try_from(n).unwrap())
            );
        }
    }
}
