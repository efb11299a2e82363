//! Code generation for `#[retry]`: signature checks, the policy, and the sync and async loops.

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{GenericArgument, PathArguments, ReturnType, Signature, Type};

use crate::frozen::{self, Arguments};
use crate::parse::{Args, CLASS_KEYS, Deadline, DurationValue, Errors, Item, ItemFn};

/// The entry point of `#[retry]`, on `proc_macro2` tokens so it can be unit-tested.
#[allow(clippy::needless_pass_by_value)] // the signature of a proc-macro entry point
pub(crate) fn retry(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = Args::parse(args, &mut errors);
    match Item::parse(item.clone()) {
        Item::Other(span) => errors.at(
            span,
            "`#[retry]` can only be used on functions\nput it on the `fn` whose calls should be retried",
        ),
        Item::Declaration { sig } => errors.at(
            sig.ident.span(),
            format!(
                "`#[retry]` needs a function body, and `{}` has none\nput `#[retry]` on the function's implementation instead",
                sig.ident
            ),
        ),
        Item::Fn(f) => {
            check_signature(&f.sig, &mut errors);
            let async_trait = AsyncTrait::detect(&f);
            let arguments = Arguments::of(&f.sig, async_trait.as_ref().map(|at| &at.preamble));
            // With `policy`, every other key is already an error.
            if args.policy.is_none() {
                for (key, value) in args.evaluated_once() {
                    frozen::check(key, value, &arguments, &mut errors);
                }
            }
            if let Some(t) = &args.attempt_timeout
                && f.sig.asyncness.is_none()
                && async_trait.is_none()
            {
                errors.at(
                    t.key.span(),
                    "`attempt_timeout` only applies to `async fn`s\na sync attempt cannot be interrupted: remove it, or make the function `async`",
                );
            }
            check_hedging(&args, &f.sig, async_trait.is_some(), &mut errors);
            if errors_are_empty(&mut errors) {
                return expand_fn(&args, f);
            }
        }
    }
    // On any error, emit the function unchanged next to the errors, so that its callers get no
    // follow-on "cannot find function" errors (tokio's `token_stream_with_error`).
    let errors = errors
        .into_result()
        .err()
        .map(syn::Error::into_compile_error);
    quote!(#item #errors)
}

/// `hedge_after` and `idempotent` need an `async fn` (only async calls hedge), and a hedged
/// body, running more than once at the same time, cannot hold a `&mut` borrow.
fn check_hedging(args: &Args, sig: &Signature, async_trait: bool, errors: &mut Errors) {
    let is_async = sig.asyncness.is_some() || async_trait;
    for (set, name) in [
        (args.hedge_after.as_ref().map(|s| &s.key), "hedge_after"),
        (args.idempotent.as_ref().map(|s| &s.key), "idempotent"),
    ] {
        if let Some(key) = set
            && !is_async
        {
            errors.at(
                key.span(),
                format!("`{name}` only applies to `async fn`s\na sync call never runs two attempts at once: remove it, or make the function `async`"),
            );
        }
    }
    if !args.is_idempotent() || !is_async {
        return;
    }
    for input in &sig.inputs {
        let mutable = match input {
            syn::FnArg::Receiver(r) => {
                matches!(&r.kind, syn::ReceiverKind::Reference(_, _, Some(_)))
            }
            syn::FnArg::Typed(t) => matches!(&*t.ty, Type::Reference(r) if r.mutability.is_some()),
        };
        if mutable {
            errors.spanned(
                input,
                "an `idempotent` function cannot take a `&mut` argument\nits body may run more than once at the same time (hedging), and they cannot share a `&mut` borrow: take `&` (with interior mutability if needed)",
            );
        }
    }
}

fn errors_are_empty(errors: &mut Errors) -> bool {
    let taken = std::mem::take(errors).into_result();
    match taken {
        Ok(()) => true,
        Err(e) => {
            errors.push(e);
            false
        }
    }
}

/// Rejects what the retry loop cannot wrap, each error at the offending tokens.
fn check_signature(sig: &Signature, errors: &mut Errors) {
    if let Some(constness) = &sig.constness {
        errors.at(
            constness.span,
            "`#[retry]` cannot be used on a `const fn`\nretrying sleeps and reads a clock, which a `const fn` cannot do; remove `const`",
        );
    }
    if let Some(abi) = &sig.abi {
        errors.spanned(
            abi,
            "`#[retry]` cannot be used on an `extern` function\nput `#[retry]` on a Rust function and call it from the `extern` one",
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(variadic, "`#[retry]` cannot be used on a variadic function");
    }
    if let ReturnType::Default = sig.output {
        errors.at(
            sig.ident.span(),
            format!(
                "`#[retry]` functions must return `Result<T, E>`, and `{}` returns `()`\nadd a return type such as `-> Result<(), MyError>`",
                sig.ident
            ),
        );
    }
}

/// Replaces every `impl Trait` by `_`, so the return type can annotate a local (as tracing's
/// `erase_impl_trait` and async-trait's `replace_impl_trait_with_infer` do).
struct EraseImplTrait;

impl VisitMut for EraseImplTrait {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::ImplTrait(it) = ty {
            *ty = Type::Infer(syn::TypeInfer {
                attrs: vec![],
                underscore_token: syn::Token![_](it.impl_token.span),
            });
        } else {
            syn::visit_mut::visit_type_mut(self, ty);
        }
    }
}

fn erase_impl_trait(ty: &Type) -> Type {
    let mut ty = ty.clone();
    EraseImplTrait.visit_type_mut(&mut ty);
    ty
}

/// The pieces of a function that `#[async_trait]` has already rewritten.
///
/// async-trait (0.1.92) turns `async fn f(&self, x: X) -> R { body }` into
/// `fn f<'life0, 'async_trait>(&'life0 self, x: X) -> Pin<Box<dyn Future<Output = R> + Send +
/// 'async_trait>> { Box::pin(async move { PREAMBLE let __ret: R = { body }; __ret }) }`, where
/// `PREAMBLE` moves the arguments into the future (`let __self = self; let x = x;`).
struct AsyncTrait {
    /// `Box::pin`, as async-trait wrote it.
    box_pin: TokenStream,
    /// What runs once per call: the argument moves.
    preamble: TokenStream,
    /// What runs once per attempt: the user's body.
    body: TokenStream,
    /// `R`, the future's output.
    output: Type,
}

impl AsyncTrait {
    fn detect(f: &ItemFn) -> Option<AsyncTrait> {
        if f.sig.asyncness.is_some() {
            return None;
        }
        let ReturnType::Type(_, ty) = &f.sig.output else {
            return None;
        };
        let output = boxed_future_output(ty)?;
        let tokens: Vec<TokenTree> = f.body.clone().into_iter().collect();
        let [
            TokenTree::Ident(boxed),
            TokenTree::Punct(c1),
            TokenTree::Punct(c2),
            TokenTree::Ident(pin),
            TokenTree::Group(args),
        ] = tokens.as_slice()
        else {
            return None;
        };
        if boxed != "Box" || pin != "pin" || c1.as_char() != ':' || c2.as_char() != ':' {
            return None;
        }
        let inner: Vec<TokenTree> = args.stream().into_iter().collect();
        let [
            TokenTree::Ident(async_),
            TokenTree::Ident(move_),
            TokenTree::Group(block),
        ] = inner.as_slice()
        else {
            return None;
        };
        if async_ != "async" || move_ != "move" || block.delimiter() != Delimiter::Brace {
            return None;
        }
        let content: Vec<TokenTree> = block.stream().into_iter().collect();
        let (preamble, body) = split_async_trait_block(&content).unwrap_or_else(|| {
            // An unknown shape: retry the whole block. Correct, but arguments taken by value
            // are then moved in every attempt (E0382 unless they are `Copy`).
            (TokenStream::new(), block.stream())
        });
        Some(AsyncTrait {
            box_pin: tokens[..4].iter().cloned().collect(),
            preamble,
            body,
            output,
        })
    }
}

/// Splits `PREAMBLE let __ret: R = { body }; #[allow(..)] __ret` into `PREAMBLE` and `body`.
fn split_async_trait_block(content: &[TokenTree]) -> Option<(TokenStream, TokenStream)> {
    let is_ident = |tt: &TokenTree, name: &str| matches!(tt, TokenTree::Ident(i) if i == name);
    let is_punct = |tt: &TokenTree, c: char| matches!(tt, TokenTree::Punct(p) if p.as_char() == c);
    let start = content
        .windows(3)
        .position(|w| is_ident(&w[0], "let") && is_ident(&w[1], "__ret") && is_punct(&w[2], ':'))?;
    let n = content.len();
    if n < start + 6 {
        return None;
    }
    let tail = &content[n - 6..];
    let body = match &tail[1] {
        TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => g.stream(),
        _ => return None,
    };
    let shape_ok = is_punct(&tail[0], '=')
        && is_punct(&tail[2], ';')
        && is_punct(&tail[3], '#')
        && matches!(&tail[4], TokenTree::Group(g) if g.delimiter() == Delimiter::Bracket)
        && is_ident(&tail[5], "__ret");
    shape_ok.then(|| (content[..start].iter().cloned().collect(), body))
}

/// `R` in `Pin<Box<dyn Future<Output = R> + ..>>`.
fn boxed_future_output(ty: &Type) -> Option<Type> {
    fn single_arg<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
        let Type::Path(p) = ty else { return None };
        let last = p.path.segments.last()?;
        if last.ident != name {
            return None;
        }
        let PathArguments::AngleBracketed(args) = &last.arguments else {
            return None;
        };
        match args.args.first()? {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        }
    }
    let boxed = single_arg(ty, "Pin")?;
    let Type::TraitObject(object) = single_arg(boxed, "Box")? else {
        return None;
    };
    object.bounds.iter().find_map(|bound| {
        let syn::TypeParamBound::Trait(t) = bound else {
            return None;
        };
        let last = t.path.segments.last()?;
        if last.ident != "Future" {
            return None;
        }
        let PathArguments::AngleBracketed(args) = &last.arguments else {
            return None;
        };
        args.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(a) if a.ident == "Output" => Some(a.ty.clone()),
            _ => None,
        })
    })
}

/// Names used by the generated code.
struct Names {
    /// Where generated code is located: at the return type, with call-site hygiene. An error
    /// about the glue (the return type is not a `Result`, its error type is not `Debug`) then
    /// points at the return type, and the repeats of one error at one place are merged by rustc.
    glue: Span,
    /// The local holding the `Witness` that the return type is a `Result`.
    witness: syn::Ident,
    /// The path to the facade, `::reflexio` unless `crate = ..` says otherwise.
    krate: TokenStream,
    /// Locals with mixed-site hygiene: the user's body cannot name them, nor shadow them.
    policy: syn::Ident,
    attempts: syn::Ident,
    next: syn::Ident,
    attempt: syn::Ident,
    result: syn::Ident,
    delay: syn::Ident,
}

impl Names {
    fn new(args: &Args, ret: &Type) -> Names {
        let glue = Span::call_site().located_at(ret.span());
        let krate = if let Some(set) = &args.krate {
            respan(set.value.to_token_stream(), glue)
        } else {
            quote_spanned!(glue=> ::reflexio)
        };
        let local = |name: &str| {
            format_ident!(
                "__reflexio_{}",
                name,
                span = Span::mixed_site().located_at(glue)
            )
        };
        Names {
            glue,
            witness: local("witness"),
            krate,
            policy: local("policy"),
            attempts: local("attempts"),
            next: local("next"),
            attempt: local("attempt"),
            result: local("result"),
            delay: local("delay"),
        }
    }
}

// Input (an async function lending an argument mutably to each attempt: the loop below;
// one that only shares its arguments runs on the policy's call future instead, with the cell
// alone as for a sync function: see `async_call`):
//     #[retry(max_attempts = 3)]
//     async fn f(&self, x: &mut Vec<u8>) -> Result<T, E> { #![allow(..)] body }
//
// Output (async; the sync expansion follows):
//     async fn f(&self, x: &mut Vec<u8>) -> Result<T, E> {
//         #![allow(..)]                              // inner attributes, hoisted
//         let __reflexio_witness = witness::<Result<T, E>, _, _>();   // the `IsResult` check
//         let __reflexio_policy = {
//             let __reflexio_witness = __reflexio_witness;   // borrowed only in this block
//             static __REFLEXIO_POLICY: PolicyCell = PolicyCell::new();
//             __REFLEXIO_POLICY.get_or_init(|| built(classify_self(__reflexio_witness,
//                 async_builder(__reflexio_witness)).max_attempts(3).operation("f")
//                 .build(), "f"))
//         };
//         // (With `policy = EXPR` instead, at every call:
//         //     let __reflexio_policy_value = &(EXPR);
//         //     let __reflexio_policy = async_policy(__reflexio_witness, __reflexio_policy_value);
//         // and with `circuit_breaker = B`, the builder goes through a helper that checks the
//         // error type: `circuit_breaker(__reflexio_witness, <builder>, B).build()`.)
//         // A lean policy (no breaker, budget or hook) makes no state before a failure (`Call`).
//         let mut __reflexio_attempts = start_async(__reflexio_policy, __reflexio_witness);
//         let mut __reflexio_next = __reflexio_attempts.begin();
//         loop {
//             __reflexio_next = match __reflexio_next {
//                 Next::Attempt => match {
//                     let attempt = async { <fake return> body };
//                     if __reflexio_attempts.timed_attempts() {
//                         __reflexio_attempts.timed(attempt).await
//                     } else {
//                         Some(attempt.await)
//                     }
//                 } {
//                     // A fresh witness after an await: a constant, not a local kept in the future.
//                     Some(result) => record(&mut __reflexio_attempts, witness::<..>(), result),
//                     None => __reflexio_attempts.record_timeout(),
//                 },
//                 Next::Sleep(delay) => {
//                     if !delay.is_zero() { __reflexio_attempts.sleep(delay).await; }
//                     __reflexio_attempts.resume()
//                 }
//                 Next::Done(result) => return done(witness::<..>(), result),
//             };
//         }
//     }
//
// Input (sync):
//     #[retry(max_attempts = 3)]
//     fn g(x: &str) -> Result<T, E> { body }
//
// Output (see `sync_call`):
//     fn g(x: &str) -> Result<T, E> {
//         fn __reflexio_attempts<R, F: FnMut() -> R>(attempt: F) -> F { attempt }
//         let __reflexio_witness = witness::<Result<T, E>, _, _>();   // the `IsResult` check
//         let __reflexio_policy = {                  // the cell alone, not the policy
//             static __REFLEXIO_POLICY: PolicyCell = PolicyCell::new();
//             &__REFLEXIO_POLICY
//         };
//         // Looks the policy up (building it on the first call) and runs `RetryPolicy::call`;
//         // or, once the cell holds a lean policy of this type with no deadline counted from
//         // the start, runs the first attempt first, returns its `Ok` at once, and looks the
//         // policy up only after a failure, going on from it (`retry_sync_cached`).
//         retry_sync_cached(
//             __reflexio_policy,
//             __reflexio_witness,
//             // The witness as an argument, not captured: a borrowed one would be stored in
//             // memory before every call.
//             |__reflexio_witness| built(classify_self(__reflexio_witness,
//                 sync_builder(__reflexio_witness)).max_attempts(3).operation("g")
//                 .build(), "g"),
//             __reflexio_attempts(|| -> Result<T, E> { body }),
//         )
//         // (With `policy = EXPR` instead: `__reflexio_policy` as in the async expansion, with
//         // `sync_policy`, and `retry_sync(__reflexio_policy, __reflexio_witness,
//         // __reflexio_attempts(|| -> Result<T, E> { body }))`.)
//     }
fn expand_fn(args: &Args, f: ItemFn) -> TokenStream {
    let async_trait = AsyncTrait::detect(&f);
    let ItemFn {
        attrs,
        vis,
        sig,
        brace,
        inner_attrs,
        body,
    } = f;
    let ret = match (&async_trait, &sig.output) {
        (Some(at), _) => erase_impl_trait(&at.output),
        (None, ReturnType::Type(_, ty)) => erase_impl_trait(ty),
        (None, ReturnType::Default) => unreachable!("rejected by `check_signature`"),
    };
    let names = Names::new(args, &ret);
    let is_async = sig.asyncness.is_some() || async_trait.is_some();
    // An async function whose body only shares its arguments runs on the policy's own call
    // future (`async_call`); the others, on a loop generated in the function (`async_loop`).
    let on_call_future =
        is_async && async_trait.is_none() && !args.is_idempotent() && !lends_mutably(&sig);
    let (init, build) = policy_init(
        args,
        &sig,
        &ret,
        &names,
        is_async,
        is_async && !on_call_future,
    );
    let new_body = if let Some(at) = async_trait {
        let AsyncTrait {
            box_pin,
            preamble,
            body,
            ..
        } = at;
        let retry_loop = async_loop(&names, &ret, &body, args.is_idempotent());
        quote! {
            #box_pin(async move {
                #preamble
                #init
                #retry_loop
            })
        }
    } else if is_async {
        let retry_loop = if on_call_future {
            async_call(&names, &ret, &body, build)
        } else {
            async_loop(&names, &ret, &body, args.is_idempotent())
        };
        quote! { #init #retry_loop }
    } else {
        let (attempts, retry) = sync_call(&names, &ret, &body, brace.span.join(), build);
        quote! { #attempts #init #retry }
    };
    let mut block = TokenStream::new();
    brace.surround(&mut block, |tokens| {
        // Inner attributes (`#![allow(..)]`) stay at the top of the function's block, where they
        // apply to the whole function: left in the body they would land inside a closure or an
        // async block, where inner attributes are not allowed.
        for attr in &inner_attrs {
            attr.to_tokens(tokens);
        }
        new_body.to_tokens(tokens);
    });
    quote! {
        #(#attrs)*
        #vis #sig #block
    }
}

/// `let __reflexio_policy = ..;`: a reference to the policy of this call; or, for a function
/// with keys whose policy is not `looked_up_first` (a sync function, or an async one on the
/// call future), a reference to the policy's cell and the expression building the policy (the
/// second value), for `sync_call` and `async_call`.
///
/// With `policy = EXPR`, the expression is evaluated at every call and borrowed for it (so
/// `policy = &self.policy` gives each instance its own policy). Otherwise the policy is built
/// from the keys on the first call and kept in a `static`: `frozen::check` makes sure no
/// key reads `self` or an argument, which only the first call's would be.
fn policy_init(
    args: &Args,
    sig: &Signature,
    ret: &Type,
    names: &Names,
    is_async: bool,
    looked_up_first: bool,
) -> (TokenStream, Option<TokenStream>) {
    let krate = &names.krate;
    let policy = &names.policy;
    let glue = names.glue;
    let witness = &names.witness;
    let name = sig.ident.unraw().to_string();
    let witness_check = quote_spanned! {glue=>
        // The check that the return type is a `Result` (see `Witness`). The async loop repeats
        // it after its awaits, at the same tokens: rustc reports it once.
        let #witness = #krate::__private::witness::<#ret, _, _>();
    };
    if let Some(set) = &args.policy {
        let expr = &set.value;
        let from = if is_async {
            quote_spanned!(glue=>async_policy)
        } else {
            quote_spanned!(glue=>sync_policy)
        };
        // Located at the expression: a policy of the wrong kind (an `AsyncRetryPolicy` on a
        // sync function) is reported there.
        let at = expr.span();
        let located = Span::call_site().located_at(at);
        let value = format_ident!(
            "__reflexio_policy_value",
            span = Span::mixed_site().located_at(at)
        );
        let helper = respan(quote_spanned!(glue=> #krate::__private::#from), at);
        let witness_arg = respan(witness.to_token_stream(), at);
        let mut call_args =
            proc_macro2::Group::new(Delimiter::Parenthesis, quote!(#witness_arg, #value));
        call_args.set_span(located);
        let stmts = quote! {
            #witness_check
            // Evaluated at every call, and borrowed for it: a temporary (a policy built by the
            // expression) lives to the end of the function.
            let #value = &(#expr);
            let #policy = #helper #call_args;
        };
        return (stmts, None);
    }
    let builder = if is_async {
        quote_spanned!(glue=>async_builder)
    } else {
        quote_spanned!(glue=>sync_builder)
    };
    let configured = configured_builder(
        args,
        names,
        &name,
        quote_spanned!(glue=> #krate::__private::#builder(#witness)),
    );
    // The error's view as a `std::error::Error`, for log lines, picked from what the concrete
    // error type implements (see `ErrorChainProbe`).
    let configured = quote_spanned! {glue=>
        #krate::__private::error_chain(#configured, {
            #[allow(unused_imports)]
            use #krate::__private::error_chain_kinds::*;
            (&&&#krate::__private::error_chain_probe(#witness)).error_chain()
        })
    };
    let build = quote_spanned! {glue=>
        #krate::__private::built(#configured.build(), #name)
    };
    if !looked_up_first {
        // The cell alone: `retry_sync_cached` and `call_async_cached` look the policy up, or
        // run the first attempt before it (see `sync_call` and `async_call`).
        let stmts = quote_spanned! {glue=>
            #witness_check
            let #policy = {
                static __REFLEXIO_POLICY: #krate::__private::PolicyCell =
                    #krate::__private::PolicyCell::new();
                &__REFLEXIO_POLICY
            };
        };
        return (stmts, Some(build));
    }
    let stmts = quote_spanned! {glue=>
        #witness_check
        // The `static` is in a block of its own, out of the body's sight.
        let #policy = {
            // A copy for the initialiser, which borrows it: a borrowed local would be kept in an
            // async function's future until the end of its scope, this one only to the block's.
            let #witness = #witness;
            static __REFLEXIO_POLICY: #krate::__private::PolicyCell =
                #krate::__private::PolicyCell::new();
            __REFLEXIO_POLICY.get_or_init(|| #build)
        };
    };
    (stmts, None)
}

/// `#krate::__private::#helper(witness, #rest)`, located at `at`: an unmet bound of the helper
/// (a classifier of another error type, an error type without `From<CircuitOpen>`) is then
/// reported there and nowhere else.
fn located_helper(names: &Names, helper: &str, at: Span, rest: &TokenStream) -> TokenStream {
    let krate = &names.krate;
    let helper = syn::Ident::new(helper, names.glue);
    let path = respan(quote!(#krate::__private::#helper), at);
    let witness = respan(names.witness.to_token_stream(), at);
    let mut args = proc_macro2::Group::new(Delimiter::Parenthesis, quote!(#witness, #rest));
    args.set_span(Span::call_site().located_at(at));
    quote!(#path #args)
}

/// `start` (the builder) with the settings given in the attribute, in the builder's own
/// order. The user's expressions keep their spans, so a type error in one (a strategy that is
/// not a `Strategy`) points at it. The settings with a bound on the error type go through a
/// helper taking the builder, which checks it with a message saying what to implement.
fn configured_builder(args: &Args, names: &Names, name: &str, start: TokenStream) -> TokenStream {
    let krate = &names.krate;
    let witness = &names.witness;
    let glue = names.glue;
    let mut calls = start;
    // The classifier first: the helpers take the builder as it comes out of `start`.
    if let Some(c) = &args.classifier {
        let e = &c.value;
        calls = located_helper(names, "classifier", e.span(), &quote!(#calls, #e));
    } else {
        calls = quote_spanned!(glue=> #krate::__private::classify_self(#witness, #calls));
    }
    if let Some(s) = &args.strategy {
        let e = &s.value;
        calls.extend(quote_spanned!(glue=> .strategy(#e)));
    }
    for (set, (_, class)) in args.class_strategies.iter().zip(CLASS_KEYS) {
        if let Some(set) = set {
            let e = &set.value;
            let class = syn::Ident::new(class, set.key.span());
            calls.extend(quote_spanned!(glue=>
                .strategy_for(#krate::__private::ErrorClass::#class, #e)
            ));
        }
    }
    if let Some(n) = &args.max_attempts {
        let n = n.value;
        calls.extend(quote_spanned!(glue=>.max_attempts(#n)));
    }
    if let Some(n) = &args.max_unknown_retries {
        let value = n.value.map_or_else(
            || quote_spanned!(glue=> #krate::__private::Option::None),
            |n| quote_spanned!(glue=> #krate::__private::Option::Some(#n)),
        );
        calls.extend(quote_spanned!(glue=>.max_unknown_retries(#value)));
    }
    if let Some(d) = &args.deadline {
        calls.extend(match &d.value {
            Deadline::After(d) => {
                let d = duration(d, names);
                quote_spanned!(glue=>.deadline(#d))
            }
            Deadline::Never => quote_spanned!(glue=>.no_deadline()),
        });
    }
    if let Some(h) = &args.on_event {
        let e = &h.value;
        calls.extend(quote_spanned!(glue=> .on_event(#e)));
    }
    let operation = args.operation.as_ref().map_or_else(
        || syn::LitStr::new(name, Span::call_site()),
        |o| o.value.clone(),
    );
    calls.extend(quote_spanned!(glue=>.operation(#operation)));
    if let Some(s) = &args.seed {
        let e = &s.value;
        calls.extend(quote_spanned!(glue=> .seed(#e)));
    }
    if let Some(c) = &args.clock {
        let e = &c.value;
        calls.extend(quote_spanned!(glue=> .clock(#e)));
    }
    if let Some(b) = &args.budget {
        let e = &b.value;
        calls.extend(quote_spanned!(glue=> .budget(#e)));
    }
    if let Some(m) = &args.max_server_delay {
        let d = duration(&m.value, names);
        calls.extend(quote_spanned!(glue=> .max_server_delay(#d)));
    }
    if let Some(h) = &args.hedge_after {
        let d = duration(&h.value, names);
        calls.extend(quote_spanned!(glue=> .hedging(#krate::__private::hedge_after(#d))));
    }
    let mut builder = calls;
    if let Some(b) = &args.circuit_breaker {
        let e = &b.value;
        builder = located_helper(
            names,
            "circuit_breaker",
            b.key.span(),
            &quote!(#builder, #e),
        );
    }
    if let Some(t) = &args.attempt_timeout {
        let d = duration(&t.value, names);
        builder = located_helper(
            names,
            "attempt_timeout",
            t.key.span(),
            &quote!(#builder, #d),
        );
    }
    builder
}

/// A duration key's value: `Duration::new(..)` for a literal (parsed by the macro), or the
/// user's expression, unchanged (so a type error points at it).
fn duration(value: &DurationValue, names: &Names) -> TokenStream {
    let krate = &names.krate;
    match value {
        DurationValue::Literal(d) => {
            let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
            quote_spanned!(names.glue=> #krate::__private::Duration::new(#secs, #nanos))
        }
        DurationValue::Expr(e) => e.to_token_stream(),
    }
}

/// The sync retry: the body in a closure, called once per attempt by the core's loop. Returns
/// an item to put first in the function (so no item follows a statement) and the call.
///
/// With `build` (the policy built from the keys, `__reflexio_policy` being its cell), the call
/// is `retry_sync_cached`, which runs the first attempt before the lookup when the cell says
/// its policy needs nothing before it; with `policy = EXPR`, `retry_sync` with that policy.
///
/// The closure has the function's return type, so `return` and `?` end one attempt, not the
/// function. Its `FnMut` bound makes a body that moves an argument out fail with rustc's own
/// E0507 ("cannot move out of .. a captured variable in an `FnMut` closure"), at the user's code.
/// The bound is on a function of the expansion's own, spanned at the attribute: rustc's help
/// ("`FnMut` closures require captured values to be able to be consumed multiple times") then
/// points at `#[retry]`, which runs the body once per attempt, not into reflexio's source.
fn sync_call(
    names: &Names,
    ret: &Type,
    body: &TokenStream,
    body_span: Span,
    build: Option<TokenStream>,
) -> (TokenStream, TokenStream) {
    let krate = &names.krate;
    let policy = &names.policy;
    let witness = &names.witness;
    let glue = names.glue;
    let attempts = format_ident!(
        "__reflexio_attempts",
        span = Span::mixed_site().located_at(glue)
    );
    let fn_mut = respan(
        quote_spanned!(glue=> #krate::__private::FnMut() -> R),
        Span::call_site(),
    );
    let item = quote_spanned! {glue=>
        fn #attempts<R, F: #fn_mut>(attempt: F) -> F {
            attempt
        }
    };
    // The closure is located at the body, so rustc names the captured variables in its
    // messages (E0507 "cannot move out of `s`").
    let closure = quote_spanned!(body_span=> || -> #ret { #body });
    let call = if let Some(build) = build {
        quote_spanned! {glue=>
            #krate::__private::retry_sync_cached(
                #policy,
                #witness,
                |#witness| #build,
                #attempts(#closure),
            )
        }
    } else {
        quote_spanned! {glue=>
            #krate::__private::retry_sync(#policy, #witness, #attempts(#closure))
        }
    };
    (item, call)
}

/// `tokens`, located at `span` (each keeping its own hygiene), so an error about them points
/// there.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            let located = tt.span().located_at(span);
            if let TokenTree::Group(g) = &tt {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(located);
                tt = TokenTree::Group(group);
            } else {
                tt.set_span(located);
            }
            tt
        })
        .collect()
}

/// The async retry loop, inlined in the function.
///
/// Not a generic `async fn` taking an `AsyncFnMut`: rustc cannot prove that future `Send` when
/// the closure captures references (rust-lang/rust#138207, "implementation of `Send` is not
/// general enough"). Inlined, the future is `Send` exactly when the body's is.
///
/// The body appears once. It drives the `Call` state that `start_async` returns: on a lean
/// policy (no breaker, budget or hook) it makes no per-call state before the first failure, so
/// a success is one attempt and one check of the `Ok` rule, and later failures are decided by
/// the engine alone.
///
/// With `idempotent = true`, the body is a closure's async block instead, and the call goes
/// through `AsyncRetryPolicy::call_idempotent`, which runs several of them at once when the
/// policy hedges (see `call_idempotent` in `__private`).
/// Whether the function's body may write through one of its arguments: each attempt's future
/// must then borrow it mutably in turn, which only the loop generated in the function lends
/// ([`async_loop`]); a closure handing out one future per attempt ([`async_call`]) cannot. The
/// closure is used only when every argument is visibly shared (see [`shared`]): choosing the
/// loop wrongly costs some speed, choosing the closure wrongly a compile error.
fn lends_mutably(sig: &Signature) -> bool {
    !sig.inputs.iter().all(|input| match input {
        // `&self`, or `self: &Self`: nothing to write through. `self` by value may be a
        // `&mut T` (in an `impl .. for &mut T`), and other receivers may hold one.
        syn::FnArg::Receiver(r) => {
            r.mutability.is_none()
                && match &r.kind {
                    syn::ReceiverKind::Reference(_, _, m) => m.is_none(),
                    syn::ReceiverKind::Typed(_, ty) => {
                        matches!(&**ty, Type::Reference(r) if r.mutability.is_none())
                    }
                    _ => false,
                }
        }
        // A plain binding (no `mut`, no `ref`) of a visibly shared type; a pattern may bind
        // `mut`.
        syn::FnArg::Typed(t) => {
            matches!(&*t.pat, syn::Pat::Ident(i) if i.mutability.is_none() && i.by_ref.is_none())
                && shared(&t.ty)
        }
    })
}

/// Whether a value of type `ty`, held by the function and not bound `mut`, visibly cannot be
/// written through: a shared reference (to anything: what it points to is reached only
/// through `&`), or a type with no lifetime and no `&mut` in it (a type with a lifetime may
/// hold a `&mut`, as `Ctx<'a> { hits: &'a mut u32 }` or an alias `type H<'a> = &'a mut u32`
/// does), and not `Self` (which may be a `&mut T`). A type the macro cannot see into (`impl
/// Trait`, a trait object, a macro, a function pointer) is not. An alias of a `&'static mut`
/// with no lifetime parameter cannot be told apart: its function fails to compile, with
/// rustc's error at the body.
fn shared(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) => r.mutability.is_none(),
        Type::Paren(p) => shared(&p.elem),
        Type::Group(g) => shared(&g.elem),
        Type::Tuple(t) => t.elems.iter().all(shared),
        Type::Array(a) => shared(&a.elem),
        Type::Path(p) => {
            p.qself.is_none()
                && p.path.segments.iter().all(|seg| {
                    seg.ident != "Self"
                        && match &seg.arguments {
                            PathArguments::None => true,
                            PathArguments::AngleBracketed(a) => {
                                a.args.iter().all(|arg| match arg {
                                    GenericArgument::Type(t) => shared(t),
                                    GenericArgument::Const(_) => true,
                                    _ => false,
                                })
                            }
                            PathArguments::Parenthesized(_) => false,
                        }
                })
        }
        _ => false,
    }
}

// Input: `body`, in a function whose arguments the body only shares. Output, for a function
// with keys (`build`: the policy built from them, `__reflexio_policy` being its cell):
//     let __reflexio_result = call_async_cached(
//         __reflexio_policy,
//         __reflexio_witness,
//         |__reflexio_witness| <build>,
//         || async { <fake return> body },
//         |result| attempt_result(witness::<..>(), result),
//     )
//     .await;
//     return done(witness::<..>(), __reflexio_result);
// and with `policy = EXPR`, `call_async(__reflexio_policy, <the same two closures>)`.
// The policy's own call future drives it, `AsyncRetryPolicy::call`'s (a success 145 → 123
// instructions against the loop below); the closure borrows the arguments, which every
// attempt's future shares. With keys, once the cell holds a policy whose calls start plain,
// the first attempt runs before the policy is looked up (its type check is a dynamic call),
// as in a sync function: 124 → 91 instructions a success. The conversion into a `Result`
// names the return type through a fresh witness, at the same tokens as the others: a return
// type that is not a `Result` is reported once.
fn async_call(
    names: &Names,
    ret: &Type,
    body: &TokenStream,
    build: Option<TokenStream>,
) -> TokenStream {
    let Names {
        krate,
        policy,
        result,
        witness,
        glue,
        ..
    } = names;
    let glue = *glue;
    let fake_return = fake_return_edge(glue, ret);
    let fresh_witness = quote_spanned!(glue=> #krate::__private::witness::<#ret, _, _>());
    let attempt = format_ident!(
        "__reflexio_attempt_result",
        span = Span::mixed_site().located_at(glue)
    );
    let op = quote_spanned! {glue=>
        || async {
            #fake_return
            #body
        },
        |#attempt| #krate::__private::attempt_result(#fresh_witness, #attempt),
    };
    let call = if let Some(build) = build {
        quote_spanned! {glue=>
            #krate::__private::call_async_cached(
                #policy,
                #witness,
                |#witness| #build,
                #op
            )
        }
    } else {
        quote_spanned! {glue=>
            #krate::__private::call_async(#policy, #op)
        }
    };
    quote_spanned! {glue=>
        let #result = #call.await;
        return #krate::__private::done(#fresh_witness, #result);
    }
}

/// The fake return edge (as tracing-attributes does): it tells rustc the async block's type
/// before it reads the body, so a wrong `return` in the body is reported once, at the right
/// place, instead of as a mismatch between the block and the annotation.
fn fake_return_edge(glue: Span, ret: &Type) -> TokenStream {
    let fake = format_ident!(
        "__reflexio_fake_return",
        span = Span::mixed_site().located_at(glue)
    );
    quote_spanned! {glue=>
        #[allow(
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::empty_loop,
            clippy::needless_return
        )]
        if false {
            let #fake: #ret = loop {};
            return #fake;
        }
    }
}

fn async_loop(names: &Names, ret: &Type, body: &TokenStream, idempotent: bool) -> TokenStream {
    let Names {
        krate,
        policy,
        attempts,
        next,
        attempt,
        result,
        delay,
        glue,
        witness,
    } = names;
    let glue = *glue;
    let fake_return = fake_return_edge(glue, ret);
    // After an await, a fresh witness rather than the `#witness` local: a local would be kept in
    // the future across the await, and its function pointers called indirectly; a fresh one is
    // a constant the optimiser sees through. (Its check repeats `#witness`'s, at the same tokens:
    // rustc reports it once.)
    let outcome = format_ident!(
        "__reflexio_outcome",
        span = Span::mixed_site().located_at(glue)
    );
    let fresh_witness = quote_spanned!(glue=> #krate::__private::witness::<#ret, _, _>());
    if idempotent {
        // Input: `body`. Output:
        //     let __reflexio_result = call_idempotent(__reflexio_policy, __reflexio_witness,
        //         || async { <fake return> body }).await;
        //     return done(witness::<..>(), __reflexio_result);
        // The closure borrows the arguments, so every attempt's future shares them: a body
        // that moves one out is E0507 at the user's code, as for the other expansions.
        return quote_spanned! {glue=>
            let #result = #krate::__private::call_idempotent(#policy, #witness, || async {
                #fake_return
                #body
            })
            .await;
            return #krate::__private::done(#fresh_witness, #result);
        };
    }
    quote_spanned! {glue=>
        let mut #attempts = #krate::__private::start_async(#policy, #witness);
        let mut #next = #attempts.begin();
        loop {
            #next = match #next {
                #krate::__private::Next::Attempt => {
                    // The body, as an async block: its `return` and `?` end this attempt
                    // only. Awaited as it is, or under the policy's attempt timeout (`None`
                    // when it fired first): an attempt without one makes no timer. (Moved
                    // into the await, not pinned here: a `Pin` kept beside it took 16 bytes
                    // more, and a 4 KiB body costs no more instructions, so it is not copied.)
                    let #attempt = async {
                        #fake_return
                        #body
                    };
                    let #outcome = if #attempts.timed_attempts() {
                        #attempts.timed(#attempt).await
                    } else {
                        #krate::__private::Option::Some(#attempt.await)
                    };
                    match #outcome {
                        #krate::__private::Option::Some(#result) => {
                            #krate::__private::record(&mut #attempts, #fresh_witness, #result)
                        }
                        #krate::__private::Option::None => #attempts.record_timeout(),
                    }
                }
                #krate::__private::Next::Sleep(#delay) => {
                    if !#delay.is_zero() {
                        #attempts.sleep(#delay).await;
                    }
                    #attempts.resume()
                }
                #krate::__private::Next::Done(#result) => {
                    return #krate::__private::done(#fresh_witness, #result);
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(args: TokenStream, item: TokenStream) -> String {
        retry(args, item).to_string()
    }

    #[test]
    fn errors_keep_the_function_unchanged() {
        let out = expand(
            quote!(max_attempts = 0, bogus = 1),
            quote!(
                fn fetch() -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(
            out.starts_with("fn fetch () -> Result < () , E > { Ok (()) }"),
            "{out}"
        );
        assert_eq!(out.matches("compile_error").count(), 2, "{out}");
        assert!(!out.contains("__reflexio"), "{out}");
    }

    #[test]
    fn signature_errors_join_argument_errors() {
        let out = expand(
            quote!(seed = ),
            quote!(
                const extern "C" fn f() {}
            ),
        );
        // `seed = ` (no value), `const`, `extern`, and the missing return type.
        assert_eq!(out.matches("compile_error").count(), 4, "{out}");
    }

    #[test]
    fn sync_and_async_expansions() {
        let sync = expand(
            TokenStream::new(),
            quote!(
                fn f(x: &str) -> io::Result<usize> {
                    Ok(x.len())
                }
            ),
        );
        assert!(sync.contains("retry_sync_cached"), "{sync}");
        assert!(sync.contains("static __REFLEXIO_POLICY"), "{sync}");
        assert!(!sync.contains("get_or_init"), "{sync}");
        let given = expand(
            quote!(policy = &POLICY),
            quote!(
                fn f() -> io::Result<usize> {
                    Ok(1)
                }
            ),
        );
        assert!(given.contains("retry_sync ("), "{given}");
        assert!(!given.contains("retry_sync_cached"), "{given}");
        assert!(!given.contains("PolicyCell"), "{given}");
        assert!(
            sync.contains(
                ":: reflexio :: __private :: witness :: < io :: Result < usize > , _ , _ >"
            ),
            "{sync}"
        );
        assert!(sync.contains(". operation (\"f\")"), "{sync}");
        let asynchronous = expand(
            quote!(crate = my::rx),
            quote!(
                async fn g() -> Result<impl Display, E> {
                    #![allow(unused)]
                    Ok(1)
                }
            ),
        );
        assert!(
            asynchronous
                .starts_with("async fn g () -> Result < impl Display , E > { # ! [allow (unused)]"),
            "{asynchronous}"
        );
        // No argument to lend: the policy's own call future drives a closure.
        assert!(
            asynchronous.contains("my :: rx :: __private :: call_async"),
            "{asynchronous}"
        );
        assert!(!asynchronous.contains("start_async"), "{asynchronous}");
        assert!(
            asynchronous.contains("witness :: < Result < _ , E > , _ , _ >"),
            "{asynchronous}"
        );
        assert!(!asynchronous.contains("retry_sync"), "{asynchronous}");
    }

    /// An argument the body may mutate: the loop in the function, which lends it to each
    /// attempt in turn; arguments it can only share: the policy's call future and a closure.
    #[test]
    fn async_bodies_that_may_mutate_an_argument_get_the_loop() {
        let loops = [
            quote!(
                async fn h(&mut self) -> Result<(), E> {
                    Ok(())
                }
            ),
            quote!(
                async fn h(mut self) -> Result<(), E> {
                    Ok(())
                }
            ),
            quote!(
                async fn h(x: &mut u8) -> Result<(), E> {
                    Ok(())
                }
            ),
            quote!(
                async fn h(mut x: u8) -> Result<(), E> {
                    Ok(())
                }
            ),
            quote!(
                async fn h(x: Option<&mut u8>) -> Result<(), E> {
                    Ok(())
                }
            ),
            quote!(
                async fn h((a, b): (u8, u8)) -> Result<(), E> {
                    Ok(())
                }
            ),
            quote!(
                async fn h(x: impl AsMut<u8>) -> Result<(), E> {
                    Ok(())
                }
            ),
            // Writable without `&mut` or `mut` in sight: a type with a lifetime (a struct
            // holding a `&mut`, an alias of one), `self` by value (an `impl .. for &mut T`),
            // `Self`.
            quote!(
                async fn h(ctx: Ctx<'_>) -> Result<(), E> {
                    Ok(())
                }
            ),
            quote!(
                async fn h(hits: Hits<'a>) -> Result<(), E> {
                    Ok(())
                }
            ),
            quote!(
                async fn h(self) -> Result<(), E> {
                    Ok(())
                }
            ),
            quote!(
                async fn h(self: Box<Self>) -> Result<(), E> {
                    Ok(())
                }
            ),
            quote!(
                async fn h(x: Self) -> Result<(), E> {
                    Ok(())
                }
            ),
            quote!(
                async fn h(x: Option<Self>) -> Result<(), E> {
                    Ok(())
                }
            ),
            quote!(
                async fn h(ref mut x: u8) -> Result<(), E> {
                    Ok(())
                }
            ),
            quote!(
                async fn h(f: fn(&mut u8)) -> Result<(), E> {
                    Ok(())
                }
            ),
        ];
        for item in loops {
            let out = expand(quote!(), item);
            assert!(out.contains("start_async"), "{out}");
            assert!(!out.contains("call_async"), "{out}");
        }
    }

    /// Arguments the body can only share (a shared reference to anything, a type with no
    /// lifetime): the policy's call future and a closure.
    #[test]
    fn async_bodies_that_only_share_their_arguments_get_the_call_future() {
        let closures = [
            quote!(
                async fn h(&self, x: &u8, y: u8) -> Result<(), E> {
                    Ok(())
                }
            ),
            quote!(
                async fn h(self: &Self) -> Result<(), E> {
                    Ok(())
                }
            ),
            quote!(
                async fn h(s: String, v: Vec<u8>, o: Option<&str>) -> Result<(), E> {
                    Ok(())
                }
            ),
            quote!(
                async fn h(c: &Ctx<'_>, t: (u8, &str), a: [u8; 4]) -> Result<(), E> {
                    Ok(())
                }
            ),
        ];
        for item in closures {
            let out = expand(quote!(), item);
            assert!(out.contains("call_async"), "{out}");
        }
    }

    #[test]
    fn a_policy_expression_is_evaluated_per_call_and_the_keys_once() {
        let item = quote!(
            async fn f(&self, x: u8) -> Result<(), E> {
                Ok(())
            }
        );
        let per_call = expand(quote!(policy = &self.policy), item.clone());
        assert!(!per_call.contains("compile_error"), "{per_call}");
        assert!(
            per_call.contains("let __reflexio_policy_value = & (& self . policy) ;"),
            "{per_call}"
        );
        assert!(per_call.contains("async_policy"), "{per_call}");
        assert!(!per_call.contains("PolicyCell"), "{per_call}");
        let once = expand(quote!(seed = x as u64, strategy = no_delay()), item.clone());
        assert_eq!(once.matches("compile_error").count(), 1, "{once}");
        assert!(
            once.contains("`seed` cannot use the argument `x`"),
            "{once}"
        );
        // With `policy`, the other keys are reported as such, and only as such.
        let both = expand(quote!(policy = &self.policy, seed = x as u64), item);
        assert_eq!(both.matches("compile_error").count(), 1, "{both}");
        assert!(both.contains("cannot be combined with `policy`"), "{both}");
    }

    #[test]
    fn async_trait_bodies_are_split() {
        let out = expand(
            TokenStream::new(),
            quote! {
                fn load<'a, 'async_trait>(&'a self, s: String)
                    -> Pin<Box<dyn Future<Output = Result<u8, E>> + Send + 'async_trait>>
                {
                    Box::pin(async move {
                        let __self = self;
                        let s = s;
                        let __ret: Result<u8, E> = { __self.go(&s) };
                        #[allow(unreachable_code)]
                        __ret
                    })
                }
            },
        );
        // The argument moves run once, before the loop; the body once per attempt.
        let preamble = out.find("let s = s ;").expect("preamble kept");
        let lp = out.find("loop").expect("a loop");
        let body = out.rfind("__self . go (& s)").expect("body kept");
        assert!(preamble < lp && lp < body, "{out}");
        assert!(out.contains("start_async"), "{out}");
    }
}
