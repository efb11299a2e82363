//! Parsing `#[retry(...)]`: the arguments ([`Args`]), the function ([`ItemFn`]), and the error
//! accumulator ([`Errors`]).

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Attribute, Expr, Ident, Lit, LitStr, Path, Signature, Token, Visibility};

/// Collects errors, so that every mistake in one attribute is reported in one build.
///
/// `tokio-macros` and `thiserror` stop at the first error; serde's `Ctxt` collects them, which
/// is what users want: fix everything in one edit-compile cycle.
#[derive(Default)]
pub(crate) struct Errors {
    combined: Option<syn::Error>,
}

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(combined) => combined.combine(error),
            None => self.combined = Some(error),
        }
    }

    /// How many errors are collected so far.
    pub(crate) fn count(&self) -> usize {
        self.combined.as_ref().map_or(0, |e| e.into_iter().count())
    }

    pub(crate) fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn into_result(self) -> Result<(), syn::Error> {
        self.combined.map_or(Ok(()), Err)
    }
}

/// The retryable classes that have their own strategy key, with the `ErrorClass` variant each
/// key sets.
pub(crate) const CLASS_KEYS: [(&str, &str); 5] = [
    ("transient", "Transient"),
    ("rate_limit", "RateLimit"),
    ("server_error", "ServerError"),
    ("concurrency", "Concurrency"),
    ("unknown", "Unknown"),
];

/// Every key `#[retry]` accepts, in the order the "expected one of" message lists them.
///
/// Adding a key that takes an expression (as `budget = EXPR` does) takes one entry here, one
/// field, one arm in [`Args::set`], and one call in `expand::builder_calls`.
pub(crate) const KEYS: [&str; 22] = [
    "classifier",
    "strategy",
    "transient",
    "rate_limit",
    "server_error",
    "concurrency",
    "unknown",
    "max_attempts",
    "max_unknown_retries",
    "deadline",
    "max_server_delay",
    "on_event",
    "operation",
    "seed",
    "clock",
    "budget",
    "circuit_breaker",
    "attempt_timeout",
    "hedge_after",
    "idempotent",
    "policy",
    "crate",
];

fn keys_list() -> String {
    KEYS.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value and the key it was given under (for spans in later errors).
pub(crate) struct Set<T> {
    pub(crate) key: Ident,
    pub(crate) value: T,
}

/// The value of a duration key: a literal, checked at compile time, or an expression of type
/// `Duration` (as the builder takes it), such as `Duration::from_secs(30)` or a `const`.
pub(crate) enum DurationValue {
    Literal(std::time::Duration),
    Expr(Expr),
}

/// `deadline = "30s"`, `deadline = Duration::from_secs(30)` or `deadline = None`.
pub(crate) enum Deadline {
    After(DurationValue),
    Never,
}

/// The parsed arguments of one `#[retry(...)]`.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) classifier: Option<Set<Expr>>,
    pub(crate) strategy: Option<Set<Expr>>,
    /// Per-class strategies, indexed like [`CLASS_KEYS`].
    pub(crate) class_strategies: [Option<Set<Expr>>; 5],
    pub(crate) max_attempts: Option<Set<u32>>,
    pub(crate) max_unknown_retries: Option<Set<Option<u32>>>,
    pub(crate) deadline: Option<Set<Deadline>>,
    pub(crate) on_event: Option<Set<Expr>>,
    pub(crate) operation: Option<Set<LitStr>>,
    pub(crate) seed: Option<Set<Expr>>,
    pub(crate) clock: Option<Set<Expr>>,
    pub(crate) budget: Option<Set<Expr>>,
    pub(crate) circuit_breaker: Option<Set<Expr>>,
    pub(crate) attempt_timeout: Option<Set<DurationValue>>,
    pub(crate) max_server_delay: Option<Set<DurationValue>>,
    /// `hedge_after = "10ms"`: hedge after a fixed delay (async, with `idempotent = true`).
    pub(crate) hedge_after: Option<Set<DurationValue>>,
    /// `idempotent = true`: the body is safe to run more than once at the same time.
    pub(crate) idempotent: Option<Set<bool>>,
    pub(crate) policy: Option<Set<Expr>>,
    pub(crate) krate: Option<Set<Path>>,
    /// Every key given, in source order.
    order: Vec<Ident>,
}

impl Args {
    /// Parses the attribute's arguments, collecting every error instead of stopping at the
    /// first: after a bad argument, parsing resumes at the next top-level `,`.
    pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> Args {
        let mut args = Args::default();
        let parser = |input: ParseStream<'_>| {
            args.parse_all(input, errors);
            Ok(())
        };
        if let Err(e) = parser.parse2(tokens) {
            errors.push(e);
        }
        args.check_policy_exclusive(errors);
        args.check_hedging(errors);
        args
    }

    /// Whether calls hedge: the function states it is idempotent (`idempotent = true`).
    pub(crate) fn is_idempotent(&self) -> bool {
        self.idempotent.as_ref().is_some_and(|set| set.value)
    }

    /// Hedging runs the body more than once at the same time: only with the function's own
    /// statement that this is safe, as `call_idempotent` asks of a builder policy's caller.
    fn check_hedging(&self, errors: &mut Errors) {
        if let Some(hedge) = &self.hedge_after
            && !self.is_idempotent()
        {
            errors.at(
                hedge.key.span(),
                "`hedge_after` runs the function's body more than once at the same time\nstate that this is safe with `idempotent = true` (only if it is: a hedged payment is paid twice)",
            );
        }
    }

    fn parse_all(&mut self, input: ParseStream<'_>, errors: &mut Errors) {
        while !input.is_empty() {
            if let Err(e) = self.parse_one(input, errors) {
                errors.push(e);
                skip_to_comma(input);
            } else if !input.is_empty() && !input.peek(Token![,]) {
                errors.push(input.error("expected `,` between arguments"));
                skip_to_comma(input);
            }
            if !input.is_empty() {
                input.parse::<Token![,]>().expect("stopped at a `,`");
            }
        }
    }

    /// Parses `key = value`. An `Err` is a syntax error; a value that parses but is not valid
    /// (such as `max_attempts = 0`) is pushed to `errors` and parsing goes on.
    fn parse_one(&mut self, input: ParseStream<'_>, errors: &mut Errors) -> syn::Result<()> {
        if !input.peek(Ident::peek_any) {
            return Err(input.error(format!(
                "expected an argument name, one of: {}",
                keys_list()
            )));
        }
        // `parse_any` accepts the keyword `crate` too.
        let key = Ident::parse_any(input)?;
        let name = key.unraw().to_string();
        if !KEYS.contains(&name.as_str()) {
            let close = did_you_mean(&name)
                .map(|close| format!("; did you mean `{close}`?"))
                .unwrap_or_default();
            let message = format!(
                "unknown `#[retry]` argument `{name}`{close}\nexpected one of: {}",
                keys_list()
            );
            errors.at(key.span(), message);
            skip_to_comma(input);
            return Ok(());
        }
        if !input.peek(Token![=]) {
            return Err(syn::Error::new(
                key.span(),
                format!("expected `{name} = ...`: `{name}` takes a value"),
            ));
        }
        input.parse::<Token![=]>()?;
        let value: Expr = input.parse()?;
        self.set(key, &name, value, errors);
        Ok(())
    }

    /// Stores one argument, checking it is not a duplicate and that literal values are valid.
    fn set(&mut self, key: Ident, name: &str, value: Expr, errors: &mut Errors) {
        // Every duplicate check goes through here, so no key can forget it (tracing-attributes
        // checks `parent` against the wrong field, a copy-paste bug this layout rules out).
        fn store<T>(slot: &mut Option<Set<T>>, key: Ident, value: T, errors: &mut Errors) {
            if let Some(first) = slot {
                errors.at(
                    key.span(),
                    format!(
                        "duplicate `{}` argument\nremove one: `{}` is already set",
                        key.unraw(),
                        first.key.unraw()
                    ),
                );
            } else {
                *slot = Some(Set { key, value });
            }
        }
        self.order.push(key.clone());
        match name {
            "classifier" => store(&mut self.classifier, key, value, errors),
            "strategy" => {
                constructor_not_called(name, &value, errors);
                store(&mut self.strategy, key, value, errors);
            }
            "on_event" => store(&mut self.on_event, key, value, errors),
            "seed" => store(&mut self.seed, key, value, errors),
            "clock" => store(&mut self.clock, key, value, errors),
            "budget" => store(&mut self.budget, key, value, errors),
            "circuit_breaker" => store(&mut self.circuit_breaker, key, value, errors),
            "attempt_timeout" | "max_server_delay" | "hedge_after" => {
                let d = duration_value(name, &value, errors)
                    .unwrap_or(DurationValue::Literal(std::time::Duration::ZERO));
                let slot = match name {
                    "attempt_timeout" => &mut self.attempt_timeout,
                    "max_server_delay" => &mut self.max_server_delay,
                    _ => &mut self.hedge_after,
                };
                store(slot, key, d, errors);
            }
            "idempotent" => {
                let b = idempotent(&value, errors);
                store(&mut self.idempotent, key, b, errors);
            }
            "policy" => store(&mut self.policy, key, value, errors),
            "max_attempts" => {
                if let Some(n) = max_attempts(&value, errors) {
                    store(&mut self.max_attempts, key, n, errors);
                } else {
                    // Still a duplicate if given twice, even when invalid.
                    store(&mut self.max_attempts, key, 1, errors);
                }
            }
            "max_unknown_retries" => {
                let n = max_unknown_retries(&value, errors).unwrap_or(None);
                store(&mut self.max_unknown_retries, key, n, errors);
            }
            "deadline" => {
                let d = deadline(&value, errors).unwrap_or(Deadline::Never);
                store(&mut self.deadline, key, d, errors);
            }
            "operation" => {
                let lit = match &value {
                    Expr::Lit(syn::ExprLit {
                        lit: Lit::Str(s), ..
                    }) => s.clone(),
                    other => {
                        errors.spanned(
                            other,
                            "`operation` must be a string literal, such as `operation = \"fetch_user\"`",
                        );
                        LitStr::new("", other.span())
                    }
                };
                store(&mut self.operation, key, lit, errors);
            }
            "crate" => {
                let path = match &value {
                    Expr::Path(p) if p.qself.is_none() => Some(p.path.clone()),
                    Expr::Lit(syn::ExprLit {
                        lit: Lit::Str(s), ..
                    }) => s.parse_with(Path::parse_mod_style).ok(),
                    _ => None,
                };
                if let Some(path) = path {
                    store(&mut self.krate, key, path, errors);
                } else {
                    errors.spanned(
                        &value,
                        "`crate` must be a path, such as `crate = my_reflexio` or `crate = \"::my_reflexio\"`",
                    );
                }
            }
            class => {
                constructor_not_called(name, &value, errors);
                let i = CLASS_KEYS
                    .iter()
                    .position(|(k, _)| *k == class)
                    .expect("every key in `KEYS` is handled");
                store(&mut self.class_strategies[i], key, value, errors);
            }
        }
    }

    /// The keys whose expressions are evaluated once, when the policy is built: every key
    /// that takes an expression but `policy` (evaluated at every call).
    pub(crate) fn evaluated_once(&self) -> Vec<(&Ident, &Expr)> {
        let mut keys: Vec<(&Ident, &Expr)> = [
            &self.classifier,
            &self.strategy,
            &self.on_event,
            &self.seed,
            &self.clock,
            &self.budget,
            &self.circuit_breaker,
        ]
        .into_iter()
        .chain(&self.class_strategies)
        .flatten()
        .map(|set| (&set.key, &set.value))
        .collect();
        if let Some(Set {
            key,
            value: Deadline::After(DurationValue::Expr(e)),
        }) = &self.deadline
        {
            keys.push((key, e));
        }
        for duration in [
            &self.attempt_timeout,
            &self.max_server_delay,
            &self.hedge_after,
        ] {
            if let Some(Set {
                key,
                value: DurationValue::Expr(e),
            }) = duration
            {
                keys.push((key, e));
            }
        }
        // In source order, as their errors are reported.
        keys.sort_by_key(|(key, _)| self.order.iter().position(|k| k == *key));
        keys
    }

    /// `policy` brings its own configuration: any other setting next to it would be ignored
    /// silently, so each one is an error, at its key.
    fn check_policy_exclusive(&self, errors: &mut Errors) {
        if self.policy.is_none() {
            return;
        }
        for key in &self.order {
            let name = key.unraw().to_string();
            // `idempotent` is about the function, not the policy: with a policy that hedges,
            // it is what lets this function's calls hedge.
            if name != "policy" && name != "crate" && name != "idempotent" {
                errors.at(
                    key.span(),
                    format!(
                        "`{name}` cannot be combined with `policy`\nset it on the policy's builder instead, or remove `policy`"
                    ),
                );
            }
        }
    }
}

/// The constructors of `reflexio::strategies`, with the arguments each takes (for the fix).
const STRATEGY_CONSTRUCTORS: [(&str, &str); 7] = [
    ("exponential", ""),
    ("constant", "Duration::from_secs(1)"),
    ("no_delay", ""),
    ("decorrelated_jitter", ""),
    ("equal_jitter", ""),
    ("full_jitter", ""),
    ("token_backoff", ""),
];

/// Reports `strategy = exponential`, a strategy constructor's path where its value is wanted:
/// rustc would only say that the function "is expected to take 2 arguments" (a closure
/// `|ctx, u|` is a strategy too).
fn constructor_not_called(key: &str, value: &Expr, errors: &mut Errors) {
    let Expr::Path(p) = value else { return };
    let Some(last) = p.path.segments.last() else {
        return;
    };
    if p.qself.is_some() || !last.arguments.is_none() {
        return;
    }
    let Some((_, arguments)) = STRATEGY_CONSTRUCTORS
        .iter()
        .find(|(name, _)| last.ident == name)
    else {
        return;
    };
    let path = p
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::");
    let colons = if p.path.leading_colon.is_some() {
        "::"
    } else {
        ""
    };
    errors.spanned(
        value,
        format!(
            "`{key}` takes a strategy value: call the constructor, as in `{key} = {colons}{path}({arguments})`"
        ),
    );
}

/// Skips token trees up to the next top-level `,` (left in the input) or the end.
fn skip_to_comma(input: ParseStream<'_>) {
    while !input.is_empty() && !input.peek(Token![,]) {
        let _ = input.parse::<TokenTree>();
    }
}

/// A known key within two edits of `name` (ignoring case), for "did you mean".
fn did_you_mean(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_lowercase().replace('-', "_");
    KEYS.iter()
        .map(|k| (edit_distance(&name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn int_literal(value: &Expr) -> Option<&syn::LitInt> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Int(i), ..
        }) => Some(i),
        Expr::Group(g) => int_literal(&g.expr),
        _ => None,
    }
}

fn max_attempts(value: &Expr, errors: &mut Errors) -> Option<u32> {
    let Some(lit) = int_literal(value) else {
        errors.spanned(
            value,
            "`max_attempts` must be an integer literal, such as `max_attempts = 5`",
        );
        return None;
    };
    match lit.base10_parse::<u32>() {
        Ok(0) => {
            errors.spanned(
                lit,
                "`max_attempts` must be at least 1: it counts every call, the first included",
            );
            None
        }
        Ok(n) => Some(n),
        Err(_) => {
            errors.spanned(lit, "`max_attempts` must fit in a `u32`");
            None
        }
    }
}

/// `idempotent = true` or `false`; anything else is reported (and read as `false`).
fn idempotent(value: &Expr, errors: &mut Errors) -> bool {
    if let Expr::Lit(syn::ExprLit {
        lit: Lit::Bool(b), ..
    }) = value
    {
        return b.value;
    }
    errors.spanned(
        value,
        "`idempotent` must be `true` or `false`, such as `idempotent = true`",
    );
    false
}

fn is_none(value: &Expr) -> bool {
    matches!(value, Expr::Path(p) if p.qself.is_none() && p.path.is_ident("None"))
}

/// `None` for an invalid value (reported); `Some(None)` for `max_unknown_retries = None`.
#[allow(clippy::option_option)]
fn max_unknown_retries(value: &Expr, errors: &mut Errors) -> Option<Option<u32>> {
    if is_none(value) {
        return Some(None);
    }
    let Some(lit) = int_literal(value) else {
        errors.spanned(
            value,
            "`max_unknown_retries` must be an integer literal or `None`, such as `max_unknown_retries = 2`",
        );
        return None;
    };
    if let Ok(n) = lit.base10_parse::<u32>() {
        Some(Some(n))
    } else {
        errors.spanned(lit, "`max_unknown_retries` must fit in a `u32`");
        None
    }
}

fn deadline(value: &Expr, errors: &mut Errors) -> Option<Deadline> {
    if is_none(value) {
        return Some(Deadline::Never);
    }
    duration_value("deadline", value, errors).map(Deadline::After)
}

/// The value of the duration key `key`: a string literal is parsed (and a bad one reported,
/// giving `None`), any other literal is an error, and an expression is kept for the builder.
fn duration_value(key: &str, value: &Expr, errors: &mut Errors) -> Option<DurationValue> {
    let lit = match value {
        Expr::Group(g) => return duration_value(key, &g.expr, errors),
        Expr::Lit(syn::ExprLit { lit, .. }) => lit,
        expr => return Some(DurationValue::Expr(expr.clone())),
    };
    let Lit::Str(lit) = lit else {
        let none = if key == "deadline" {
            ", or `None` for no deadline"
        } else {
            ""
        };
        let unit = if matches!(lit, Lit::Int(_) | Lit::Float(_)) {
            "\na bare number has no unit"
        } else {
            ""
        };
        errors.spanned(
            lit,
            format!(
                "`{key}` takes a `Duration`, such as `{key} = Duration::from_secs(30)`, or a duration literal, such as `{key} = \"30s\"`{none}{unit}"
            ),
        );
        return None;
    };
    match parse_duration(&lit.value()) {
        Ok(d) if d.is_zero() => {
            let hint = if key == "deadline" {
                "\nto disable the deadline, write `deadline = None`"
            } else {
                ""
            };
            errors.spanned(lit, format!("`{key}` must be greater than zero{hint}"));
            None
        }
        Ok(d) => Some(DurationValue::Literal(d)),
        Err(why) => {
            errors.spanned(
                lit,
                format!("invalid duration {}: {why}", lit.to_token_stream()),
            );
            None
        }
    }
}

/// Parses a duration literal: a number (`30`, `1.5`) and a unit (`ms`, `s`, `m`, `h`), with no
/// space, such as `"250ms"`, `"30s"`, `"1.5s"`, `"2m"` or `"1h"`. Exact: `"0.1s"` is 100 ms, not
/// the nearest `f64`, and a literal that is not a whole number of nanoseconds, or is longer than
/// `Duration::MAX`, is an error. Every step is checked arithmetic: no input panics or wraps.
pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    const UNITS: &str = "use `ms`, `s`, `m` or `h`, as in \"250ms\", \"30s\", \"2m\"";
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    // The most fractional digits (trailing zeros aside) that can make a whole number of
    // nanoseconds: `F * unit / 10^f` with `F` not a multiple of 10 needs `10^f` to divide
    // `unit` but for one of its factors 2 or 5, and an hour (`2^13 * 3^2 * 5^11` ns) has 13.
    const MAX_FRACTION_DIGITS: usize = 13;
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        if text.starts_with('-') {
            return Err("a duration cannot be negative".into());
        }
        return Err(format!("expected a number followed by a unit; {UNITS}"));
    }
    let nanos_per_unit: u128 = match unit {
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        "" => return Err(format!("missing unit; {UNITS}")),
        other if other.starts_with(char::is_whitespace) => {
            return Err(
                "unexpected space; write the number and its unit together, as in \"30s\"".into(),
            );
        }
        other => return Err(format!("unknown unit `{other}`; {UNITS}")),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || fraction.contains('.') || number.ends_with('.') {
        return Err(format!("`{number}` is not a number; {UNITS}"));
    }
    let too_long = || "longer than `Duration::MAX` (about 584 billion years)".to_owned();
    let too_precise = || "more precise than a nanosecond".to_owned();
    // From here on `whole` and `fraction` are ASCII digits only.
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > MAX_FRACTION_DIGITS {
        return Err(too_precise());
    }
    let digits = u32::try_from(fraction.len()).expect("at most 13 digits");
    let scale = 10_u128.pow(digits);
    let numerator = if fraction.is_empty() {
        0
    } else {
        fraction.parse::<u128>().expect("at most 13 ASCII digits")
    };
    // Below `10^13 * 3.6 * 10^12`: no overflow.
    let fraction_nanos = numerator * nanos_per_unit;
    if !fraction_nanos.is_multiple_of(scale) {
        return Err(too_precise());
    }
    // `parse` fails only on overflow here, and then the value is beyond `Duration::MAX` too.
    let nanos = whole
        .parse::<u128>()
        .ok()
        .and_then(|w| w.checked_mul(nanos_per_unit))
        .and_then(|n| n.checked_add(fraction_nanos / scale))
        .ok_or_else(too_long)?;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| too_long())?;
    let subsec = u32::try_from(nanos % NANOS_PER_SEC).expect("below 10^9");
    Ok(std::time::Duration::new(secs, subsec))
}

/// A function whose body is kept as raw tokens: it is never parsed, so rustc sees it untouched
/// and reports its errors itself (tracing's `MaybeItemFn`, tokio's `ItemFn`).
pub(crate) struct ItemFn {
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) sig: Signature,
    pub(crate) brace: syn::token::Brace,
    pub(crate) inner_attrs: Vec<Attribute>,
    pub(crate) body: TokenStream,
}

/// What `#[retry]` was put on.
pub(crate) enum Item {
    Fn(ItemFn),
    /// A function with no body, such as a trait method's declaration.
    Declaration {
        sig: Signature,
    },
    /// Not a function: the span of what it is (`struct`, `impl`, ...).
    Other(Span),
}

impl Item {
    pub(crate) fn parse(tokens: TokenStream) -> Item {
        let parser = |input: ParseStream<'_>| -> syn::Result<Item> {
            let attrs = input.call(Attribute::parse_outer)?;
            let vis: Visibility = input.parse()?;
            let fork = input.fork();
            let Ok(sig) = fork.parse::<Signature>() else {
                let span = input
                    .cursor()
                    .token_tree()
                    .map_or_else(Span::call_site, |(tt, _)| tt.span());
                // Consume the rest, so the parse succeeds.
                input.parse::<TokenStream>()?;
                return Ok(Item::Other(span));
            };
            input.parse::<Signature>()?;
            if input.peek(Token![;]) {
                input.parse::<TokenStream>()?;
                return Ok(Item::Declaration { sig });
            }
            let content;
            let brace = syn::braced!(content in input);
            let inner_attrs = content.call(Attribute::parse_inner)?;
            let body: TokenStream = content.parse()?;
            Ok(Item::Fn(ItemFn {
                attrs,
                vis,
                sig,
                brace,
                inner_attrs,
                body,
            }))
        };
        parser
            .parse2(tokens)
            .unwrap_or_else(|e| Item::Other(e.span()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;
    use std::time::Duration;

    fn messages(tokens: TokenStream) -> (Args, Vec<String>) {
        let mut errors = Errors::default();
        let args = Args::parse(tokens, &mut errors);
        let messages = match errors.into_result() {
            Ok(()) => vec![],
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        };
        (args, messages)
    }

    #[test]
    fn every_key_parses() {
        let (args, errors) = messages(quote! {
            classifier = default_classifier,
            strategy = decorrelated_jitter().max(Duration::from_secs(10)),
            transient = constant(Duration::from_millis(1)),
            rate_limit = token_backoff(),
            server_error = equal_jitter(),
            concurrency = full_jitter(),
            unknown = no_delay(),
            max_attempts = 5,
            max_unknown_retries = None,
            deadline = "1.5s",
            on_event = |e| println!("{e}"),
            operation = "fetch",
            seed = 42,
            clock = CLOCK.clone(),
            crate = "::my::reflexio",
        });
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(args.max_attempts.unwrap().value, 5);
        assert_eq!(args.max_unknown_retries.unwrap().value, None);
        assert!(matches!(
            args.deadline.unwrap().value,
            Deadline::After(DurationValue::Literal(d)) if d == Duration::from_millis(1500)
        ));
        assert_eq!(args.operation.unwrap().value.value(), "fetch");
        assert!(args.class_strategies.iter().all(Option::is_some));
        let krate = args.krate.unwrap().value;
        assert_eq!(quote!(#krate).to_string(), ":: my :: reflexio");
    }

    #[test]
    fn all_errors_of_one_attribute_are_reported_together() {
        let (args, errors) = messages(quote! {
            max_attempts = 0,
            retries = 3,
            strategy = a(),
            strategy = b(),
            deadline = "30 sec",
            max_attempts = "five",
            operation = 1,
        });
        assert_eq!(
            errors,
            [
                "`max_attempts` must be at least 1: it counts every call, the first included",
                "unknown `#[retry]` argument `retries`\nexpected one of: `classifier`, `strategy`, \
                 `transient`, `rate_limit`, `server_error`, `concurrency`, `unknown`, `max_attempts`, \
                 `max_unknown_retries`, `deadline`, `max_server_delay`, `on_event`, `operation`, `seed`, `clock`, \
                 `budget`, `circuit_breaker`, `attempt_timeout`, `hedge_after`, `idempotent`, `policy`, \
                 `crate`",
                "duplicate `strategy` argument\nremove one: `strategy` is already set",
                "invalid duration \"30 sec\": unexpected space; write the number and its unit together, \
                 as in \"30s\"",
                "`max_attempts` must be an integer literal, such as `max_attempts = 5`",
                "duplicate `max_attempts` argument\nremove one: `max_attempts` is already set",
                "`operation` must be a string literal, such as `operation = \"fetch_user\"`",
            ]
        );
        // The valid arguments are still there.
        assert!(args.strategy.is_some());
    }

    #[test]
    fn syntax_errors_resume_at_the_next_comma() {
        let (args, errors) =
            messages(quote!(max_attempts 3, seed = 1, strategy = , deadline = "1m"));
        assert_eq!(
            errors,
            [
                "expected `max_attempts = ...`: `max_attempts` takes a value",
                "expected an expression",
            ]
        );
        assert!(args.seed.is_some());
        assert!(args.deadline.is_some());
    }

    #[test]
    fn unknown_keys_suggest_a_close_one() {
        let (_, errors) = messages(quote!(max_attempt = 3));
        assert!(
            errors[0].starts_with(
                "unknown `#[retry]` argument `max_attempt`; did you mean `max_attempts`?\n"
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn strategy_constructors_must_be_called() {
        let (_, errors) = messages(quote!(
            strategy = exponential,
            rate_limit = ::reflexio::strategies::constant,
            transient = my_strategy,
            server_error = exponential(),
        ));
        assert_eq!(
            errors,
            [
                "`strategy` takes a strategy value: call the constructor, as in `strategy = exponential()`",
                "`rate_limit` takes a strategy value: call the constructor, as in \
                 `rate_limit = ::reflexio::strategies::constant(Duration::from_secs(1))`",
            ]
        );
    }

    #[test]
    fn policy_excludes_the_other_keys_but_crate() {
        let (_, errors) = messages(quote!(max_attempts = 3, policy = P, crate = r, seed = 1));
        assert_eq!(
            errors,
            [
                "`max_attempts` cannot be combined with `policy`\nset it on the policy's builder instead, or remove `policy`",
                "`seed` cannot be combined with `policy`\nset it on the policy's builder instead, or remove `policy`",
            ]
        );
    }

    #[test]
    fn durations() {
        let ok = [
            ("250ms", Duration::from_millis(250)),
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1.5s", Duration::from_millis(1500)),
            ("0.1s", Duration::from_millis(100)),
            ("0.000000001s", Duration::from_nanos(1)),
            ("1.25ms", Duration::from_micros(1250)),
            ("0s", Duration::ZERO),
            ("007s", Duration::from_secs(7)),
            ("1.000000000000000000000000000000s", Duration::from_secs(1)),
            // Exact, where a per-digit scale would round: 5e-12 h is 18 ns, 2.5e-12 h is 9 ns.
            ("0.000000000005h", Duration::from_nanos(18)),
            ("0.0000000000025h", Duration::from_nanos(9)),
            ("0.00000000005m", Duration::from_nanos(3)),
            ("18446744073709551615.999999999s", Duration::MAX),
            (
                "5124095576030431h",
                Duration::from_secs(5_124_095_576_030_431 * 3600),
            ),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        for bad in [
            "",
            "30",
            "s",
            "30 s",
            "1.2.3s",
            "1.s",
            ".5s",
            "-1s",
            "+1s",
            "3d",
            "0.0000000001s",
            "0.000000000001h",
            "0.0000000000001m",
            "99999999999999999999999h",
            "18446744073709551616s",
            "5124095576030432h",
            "340282366920938463463374607431.9s",
            "340282366920938463463374607431768211455s",
            "\u{663}s",
            "1\u{663}s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_duration("3d").unwrap_err(),
            "unknown unit `d`; use `ms`, `s`, `m` or `h`, as in \"250ms\", \"30s\", \"2m\""
        );
        assert_eq!(
            parse_duration("340282366920938463463374607431.9s").unwrap_err(),
            "longer than `Duration::MAX` (about 584 billion years)"
        );
        assert_eq!(
            parse_duration("-1s").unwrap_err(),
            "a duration cannot be negative"
        );
        assert_eq!(
            parse_duration("0.000000000001h").unwrap_err(),
            "more precise than a nanosecond"
        );
    }

    /// The grammar and value of a duration literal, worked out independently of
    /// [`parse_duration`]: decimal digits, multiplied and compared as strings, so no size
    /// overflows. `Some(nanoseconds)` for exactly the literals that must be accepted.
    fn reference_duration(text: &str) -> Option<u128> {
        const MAX_NANOS: &str = "18446744073709551615999999999";
        // The unit as `multiplier * 10^zeros` nanoseconds.
        let (number, multiplier, zeros) = if let Some(n) = text.strip_suffix("ms") {
            (n, 1, 6)
        } else if let Some(n) = text.strip_suffix('s') {
            (n, 1, 9)
        } else if let Some(n) = text.strip_suffix('m') {
            (n, 6, 10)
        } else if let Some(n) = text.strip_suffix('h') {
            (n, 36, 11)
        } else {
            return None;
        };
        let (whole, fraction) = match number.split_once('.') {
            Some((w, f)) => (w, f),
            None => (number, ""),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(whole) || (number.contains('.') && !all_digits(fraction)) {
            return None;
        }
        // nanoseconds = digits(whole ++ fraction) * multiplier * 10^zeros / 10^len(fraction)
        let mut digits: Vec<u32> = whole
            .bytes()
            .chain(fraction.bytes())
            .map(|b| u32::from(b - b'0'))
            .collect();
        let mut carry = 0;
        for d in digits.iter_mut().rev() {
            let v = *d * multiplier + carry;
            *d = v % 10;
            carry = v / 10;
        }
        while carry > 0 {
            digits.insert(0, carry % 10);
            carry /= 10;
        }
        digits.extend(std::iter::repeat_n(0, zeros));
        let kept = digits.len() - fraction.len();
        if digits[kept..].iter().any(|&d| d != 0) {
            return None; // not a whole number of nanoseconds
        }
        let text: String = digits[..kept]
            .iter()
            .map(|d| char::from_digit(*d, 10).unwrap())
            .collect();
        let text = text.trim_start_matches('0');
        let fits = (text.len(), text) <= (MAX_NANOS.len(), MAX_NANOS);
        fits.then(|| {
            if text.is_empty() {
                0
            } else {
                text.parse().unwrap()
            }
        })
    }

    #[test]
    fn the_reference_agrees_with_the_examples() {
        assert_eq!(reference_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(reference_duration("0.000000000005h"), Some(18));
        assert_eq!(reference_duration("0.000000000001h"), None);
        assert_eq!(
            reference_duration("18446744073709551615.999999999s"),
            Some(Duration::MAX.as_nanos())
        );
        assert_eq!(reference_duration("18446744073709551616s"), None);
        assert_eq!(reference_duration("1.s"), None);
        assert_eq!(reference_duration("3"), None);
    }

    /// Hostile literals: pieces of the grammar in any order and number (signs, several dots,
    /// truncated and unknown units, spaces, non-ASCII digits and letters), numbers far beyond
    /// `Duration::MAX` and with long fractions, and arbitrary text.
    fn hostile_literal() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            4 => "[0-9]{1,3}",
            1 => "[0-9]{18,45}",
            2 => Just(".".to_owned()),
            1 => prop::sample::select(vec!["-", "+", " ", "e", "E", "_", "0x", "inf", "NaN"])
                .prop_map(str::to_owned),
            2 => prop::sample::select(vec!["ms", "s", "m", "h", "d", "us", "\u{b5}s", "ns", "M", "mss", "sm"])
                .prop_map(str::to_owned),
            1 => prop::sample::select(vec!["\u{663}", "\u{ff11}", "\u{1d7d9}", "\u{96f6}", "\u{e9}", "\u{0}"])
                .prop_map(str::to_owned),
        ];
        let shaped = (
            "[0-9]{0,45}",
            proptest::option::of("[0-9]{0,30}"),
            prop::sample::select(vec!["ms", "s", "m", "h", "", "S", "m s", "h "]),
        )
            .prop_map(|(whole, fraction, unit)| match fraction {
                Some(f) => format!("{whole}.{f}{unit}"),
                None => format!("{whole}{unit}"),
            });
        prop_oneof![
            2 => prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat()),
            2 => shaped,
            1 => any::<String>(),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(2048))]

        /// No input panics, and the parser accepts exactly the grammar's literals, with their
        /// exact value.
        #[test]
        fn duration_literals_never_panic_and_accept_exactly_the_grammar(text in hostile_literal()) {
            let parsed = parse_duration(&text).ok().map(|d| d.as_nanos());
            proptest::prop_assert_eq!(parsed, reference_duration(&text), "{:?}", text);
            // The whole attribute too: a bad literal is an error, never a panic.
            let lit = LitStr::new(&text, Span::call_site());
            let (_, errors) = messages(quote!(deadline = #lit, attempt_timeout = #lit));
            let accepted = parsed.is_some_and(|n| n > 0);
            proptest::prop_assert_eq!(errors.is_empty(), accepted, "{:?}: {:?}", text, errors);
        }
    }

    #[test]
    fn duration_keys_take_an_expression_or_a_literal() {
        let (args, errors) = messages(quote!(
            deadline = Duration::from_secs(30),
            attempt_timeout = TIMEOUT
        ));
        assert_eq!(errors, Vec::<String>::new());
        let Some(Set {
            value: Deadline::After(DurationValue::Expr(deadline)),
            ..
        }) = args.deadline
        else {
            panic!("an expression");
        };
        assert_eq!(quote!(#deadline).to_string(), "Duration :: from_secs (30)");
        assert!(matches!(
            args.attempt_timeout.unwrap().value,
            DurationValue::Expr(Expr::Path(_))
        ));
        let (_, errors) = messages(quote!(deadline = 30, attempt_timeout = true));
        assert_eq!(
            errors,
            [
                "`deadline` takes a `Duration`, such as `deadline = Duration::from_secs(30)`, or a duration literal, \
                 such as `deadline = \"30s\"`, or `None` for no deadline\na bare number has no unit",
                "`attempt_timeout` takes a `Duration`, such as `attempt_timeout = Duration::from_secs(30)`, or a \
                 duration literal, such as `attempt_timeout = \"30s\"`",
            ]
        );
    }

    #[test]
    fn zero_and_huge_literals() {
        let (_, errors) = messages(quote!(deadline = "0ms", max_attempts = 5000000000));
        assert_eq!(
            errors,
            [
                "`deadline` must be greater than zero\nto disable the deadline, write `deadline = None`",
                "`max_attempts` must fit in a `u32`",
            ]
        );
    }

    #[test]
    fn items() {
        assert!(matches!(
            Item::parse(quote!(#[inline] pub async fn f(&self) -> Result<(), E> { #![allow(x)] body })),
            Item::Fn(ItemFn { ref inner_attrs, .. }) if inner_attrs.len() == 1
        ));
        assert!(matches!(
            Item::parse(quote!(
                fn f() -> R;
            )),
            Item::Declaration { .. }
        ));
        assert!(matches!(
            Item::parse(quote!(
                struct S;
            )),
            Item::Other(_)
        ));
    }
}
