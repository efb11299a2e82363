//! Keys evaluated once: the policy of a `#[retry]` function is built from its keys on the first
//! call and kept in a `static` for the rest of the program. A key that reads `self` or an
//! argument would read the first call's forever (instance A's circuit breaker used by instance
//! B, the first call's label in every event), so [`check`] makes each such use a compile error
//! at the token, pointing to `policy = ..`, which is evaluated at every call.
//!
//! The key's expression is walked with its own scopes: a closure parameter, a `let` or a
//! `match` arm that binds an argument's name shadows it. Inside a macro invocation the tokens
//! are not parsed, so every identifier that could be a variable counts as a use (and so do a
//! format string's implicit captures, `"{label}"`): a binding of the macro's own with an
//! argument's name is then reported too, and the message says to rename it.

use proc_macro2::{Ident, Spacing, Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::visit::Visit;
use syn::{Expr, FnArg, Pat, Signature};

use crate::parse::Errors;

/// The names a function's signature (and what runs before the policy is made) binds.
pub(crate) struct Arguments {
    /// The function takes `self`.
    receiver: bool,
    /// Every binding of its arguments' patterns (`x`, and `a` and `b` in `(a, b): (u8, u8)`).
    names: Vec<String>,
}

impl Arguments {
    /// The bindings of `sig`'s arguments, and of the `let`s in `preamble` (the statements that
    /// `#[async_trait]` adds to move the arguments into its future, such as `let (a, b) =
    /// __arg1;` for a pattern argument).
    pub(crate) fn of(sig: &Signature, preamble: Option<&TokenStream>) -> Arguments {
        let mut bindings = Bindings::default();
        let mut receiver = false;
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(_) => receiver = true,
                FnArg::Typed(typed) => bindings.visit_pat(&typed.pat),
            }
        }
        if let Some(preamble) = preamble
            && let Ok(stmts) =
                syn::parse::Parser::parse2(syn::Block::parse_within, preamble.clone())
        {
            for stmt in &stmts {
                if let syn::Stmt::Local(local) = stmt {
                    bindings.visit_pat(&local.pat);
                }
            }
        }
        Arguments {
            receiver,
            names: bindings.0,
        }
    }
}

/// Reports every use of `self` or of an argument in the expression `value` of the key `key`,
/// once per name, at its first use.
pub(crate) fn check(key: &Ident, value: &Expr, arguments: &Arguments, errors: &mut Errors) {
    let mut uses = Uses {
        arguments,
        inner: Vec::new(),
        found: Vec::new(),
    };
    uses.visit_expr(value);
    let key = key.unraw();
    let mut reported: Vec<&str> = Vec::new();
    for found in &uses.found {
        if reported.contains(&found.name.as_str()) {
            continue;
        }
        reported.push(&found.name);
        errors.at(found.span, found.message(&key));
    }
}

/// One use of `self` or of an argument.
struct Use {
    span: Span,
    /// `self`, or the argument's name.
    name: String,
    /// Seen in a macro's tokens (where the macro's own bindings cannot be told apart).
    in_macro: bool,
    /// An implicit capture of a format string (`"{label}"`): the span is the whole literal.
    in_format_string: bool,
}

impl Use {
    fn message(&self, key: &Ident) -> String {
        let Use {
            name,
            in_macro,
            in_format_string,
            ..
        } = self;
        let mut message = if name == "self" {
            format!(
                "`{key}` cannot use `self`: it is evaluated once for the whole program\n\
                 the policy is built from the keys on the first call and shared by every \
                 instance; to give each instance its own settings, store a policy in it and \
                 write `policy = &self.policy`, which is evaluated at every call"
            )
        } else {
            let captured = if *in_format_string {
                " (captured by this format string)"
            } else {
                ""
            };
            format!(
                "`{key}` cannot use the argument `{name}`{captured}: it is evaluated once for the whole program\n\
                 every later call would see the first call's `{name}`; for settings that depend \
                 on the arguments, pass a policy with `policy = ..`, which is evaluated at every call"
            )
        };
        if *in_macro {
            message.push_str("\nif this `");
            message.push_str(name);
            message.push_str(
                "` is the macro's own binding, rename it: `#[retry]` cannot see bindings made \
                 inside a macro",
            );
        }
        message
    }
}

/// The bindings of patterns: `x`, `a` and `b` in `(a, S { b, .. })`, `x` in `x @ 1..`.
#[derive(Default)]
struct Bindings(Vec<String>);

impl<'ast> Visit<'ast> for Bindings {
    fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
        self.0.push(p.ident.unraw().to_string());
        if let Some((_, subpat)) = &p.subpat {
            self.visit_pat(subpat);
        }
    }

    // Not bindings: the constants of a pattern, its guard, its types, and a macro in a pattern
    // (which may bind, but whose names cannot be seen).
    fn visit_expr(&mut self, _: &'ast Expr) {}
    fn visit_type(&mut self, _: &'ast syn::Type) {}
    fn visit_macro(&mut self, _: &'ast syn::Macro) {}
}

fn bindings(pat: &Pat) -> Vec<String> {
    let mut bindings = Bindings::default();
    bindings.visit_pat(pat);
    bindings.0
}

/// Whether the identifier `tokens[i]`, in a macro's arguments, can be a variable: not a field
/// or a method (`e.label`), a path segment (`label::X`, `x::label`), a lifetime or a label
/// (`'label`), a macro (`label!(..)`), a field name or a type ascription (`label: ..`), nor a
/// named argument (`format!(.., label = ..)`, tracing's `info!(label = ..)`).
fn can_be_a_value(tokens: &[TokenTree], i: usize) -> bool {
    let punct = |j: Option<usize>| match j.and_then(|j| tokens.get(j)) {
        Some(TokenTree::Punct(p)) => Some((p.as_char(), p.spacing())),
        _ => None,
    };
    let before = |n: usize, c: char| punct(i.checked_sub(n)).is_some_and(|(p, _)| p == c);
    let after = |n: usize, c: char| punct(Some(i + n)).is_some_and(|(p, _)| p == c);
    // `..label` is a range's end: a value.
    let field = before(1, '.') && !before(2, '.');
    let path = (before(1, ':') && before(2, ':')) || after(1, ':');
    let lifetime = before(1, '\'');
    let mac = after(1, '!') && matches!(tokens.get(i + 2), Some(TokenTree::Group(_)));
    let named = punct(Some(i + 1)) == Some(('=', Spacing::Alone));
    !(field || path || lifetime || mac || named)
}

/// Walks a key's expression, keeping the bindings in scope.
struct Uses<'a> {
    arguments: &'a Arguments,
    /// The expression's own bindings in scope (closure parameters, `let`s, `match` arms): each
    /// shadows an argument of the same name.
    inner: Vec<String>,
    found: Vec<Use>,
}

impl Uses<'_> {
    /// `ident`, used as a value.
    fn ident(&mut self, ident: &Ident, in_macro: bool) {
        let name = ident.unraw().to_string();
        let is_use = if name == "self" {
            self.arguments.receiver
        } else {
            self.arguments.names.contains(&name) && !self.inner.contains(&name)
        };
        if is_use {
            self.found.push(Use {
                span: ident.span(),
                name,
                in_macro,
                in_format_string: false,
            });
        }
    }

    /// Runs `f` with `names` in scope, then drops them.
    fn scoped(&mut self, names: Vec<String>, f: impl FnOnce(&mut Self)) {
        let mark = self.inner.len();
        self.inner.extend(names);
        f(self);
        self.inner.truncate(mark);
    }

    /// A macro's tokens: every identifier that can be a variable, and format strings' implicit
    /// captures.
    fn tokens(&mut self, stream: TokenStream) {
        let tokens: Vec<TokenTree> = stream.into_iter().collect();
        for (i, token) in tokens.iter().enumerate() {
            match token {
                TokenTree::Group(group) => self.tokens(group.stream()),
                TokenTree::Literal(literal) => self.format_string(literal),
                TokenTree::Punct(_) => {}
                TokenTree::Ident(ident) => {
                    if can_be_a_value(&tokens, i) {
                        self.ident(ident, true);
                    }
                }
            }
        }
    }

    /// The implicit captures of a format string: `{label}`, `{label:?}`, `{:width$}`.
    fn format_string(&mut self, literal: &proc_macro2::Literal) {
        let Ok(text) = syn::parse2::<syn::LitStr>(TokenTree::Literal(literal.clone()).into())
        else {
            return;
        };
        let text = text.value();
        let mut rest = text.as_str();
        let mut captured = Vec::new();
        while let Some(open) = rest.find('{') {
            rest = &rest[open + 1..];
            if let Some(escaped) = rest.strip_prefix('{') {
                rest = escaped;
                continue;
            }
            let Some(close) = rest.find('}') else { break };
            let (argument, spec) = rest[..close]
                .split_once(':')
                .unwrap_or((&rest[..close], ""));
            captured.push(argument.trim());
            // `width$` and `precision$` name arguments too.
            let mut spec = spec;
            while let Some(dollar) = spec.find('$') {
                let name_start = spec[..dollar]
                    .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .map_or(0, |i| i + 1);
                captured.push(&spec[name_start..dollar]);
                spec = &spec[dollar + 1..];
            }
            rest = &rest[close + 1..];
        }
        for name in captured {
            let is_identifier = name.starts_with(|c: char| c.is_alphabetic() || c == '_')
                && name != "_"
                && name.chars().all(|c| c.is_alphanumeric() || c == '_');
            if is_identifier
                && self.arguments.names.iter().any(|n| n == name)
                && !self.inner.iter().any(|n| n == name)
            {
                self.found.push(Use {
                    span: literal.span(),
                    name: name.to_owned(),
                    in_macro: true,
                    in_format_string: true,
                });
            }
        }
    }
}

impl<'ast> Visit<'ast> for Uses<'_> {
    fn visit_expr_path(&mut self, e: &'ast syn::ExprPath) {
        if e.qself.is_none()
            && let Some(ident) = e.path.get_ident()
        {
            self.ident(ident, false);
        }
        syn::visit::visit_expr_path(self, e);
    }

    fn visit_expr_closure(&mut self, e: &'ast syn::ExprClosure) {
        let names = e.inputs.iter().flat_map(bindings).collect();
        self.scoped(names, |this| this.visit_expr(&e.body));
    }

    fn visit_block(&mut self, block: &'ast syn::Block) {
        self.scoped(Vec::new(), |this| {
            for stmt in &block.stmts {
                match stmt {
                    syn::Stmt::Local(local) => {
                        if let Some(init) = &local.init {
                            this.visit_expr(&init.expr);
                            if let Some((_, diverge)) = &init.diverge {
                                this.visit_expr(diverge);
                            }
                        }
                        // In scope for the rest of the block.
                        this.inner.extend(bindings(&local.pat));
                    }
                    // An item cannot capture anything: rustc reports it if it tries.
                    syn::Stmt::Item(_) => {}
                    syn::Stmt::Expr(expr, _) => this.visit_expr(expr),
                    syn::Stmt::Macro(m) => this.visit_macro(&m.mac),
                }
            }
        });
    }

    fn visit_arm(&mut self, arm: &'ast syn::Arm) {
        self.scoped(bindings(&arm.pat), |this| {
            if let Pat::Guard(guard) = &arm.pat {
                this.visit_expr(&guard.guard);
            }
            this.visit_expr(&arm.body);
        });
    }

    fn visit_expr_for_loop(&mut self, e: &'ast syn::ExprForLoop) {
        self.visit_expr(&e.expr);
        self.scoped(bindings(&e.pat), |this| this.visit_block(&e.body));
    }

    // `if let` and `while let` (and their chains): the bindings of a condition's `let`s are in
    // scope in the condition's rest and the loop or `then` block.
    fn visit_expr_if(&mut self, e: &'ast syn::ExprIf) {
        self.scoped(Vec::new(), |this| {
            this.visit_expr(&e.cond);
            this.visit_block(&e.then_branch);
        });
        if let Some((_, otherwise)) = &e.else_branch {
            self.visit_expr(otherwise);
        }
    }

    fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
        self.scoped(Vec::new(), |this| {
            this.visit_expr(&e.cond);
            this.visit_block(&e.body);
        });
    }

    fn visit_expr_let(&mut self, e: &'ast syn::ExprLet) {
        self.visit_expr(&e.expr);
        self.inner.extend(bindings(&e.pat));
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.tokens(m.tokens.clone());
    }

    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    /// The names reported, with whether each was seen in a macro.
    fn uses(sig: TokenStream, value: TokenStream) -> Vec<(String, bool)> {
        let sig: Signature = syn::parse2(sig).unwrap();
        let value: Expr = syn::parse2(value).unwrap();
        let arguments = Arguments::of(&sig, None);
        let mut uses = Uses {
            arguments: &arguments,
            inner: Vec::new(),
            found: Vec::new(),
        };
        uses.visit_expr(&value);
        uses.found
            .into_iter()
            .map(|u| (u.name, u.in_macro))
            .collect()
    }

    fn names(found: &[(String, bool)]) -> Vec<&str> {
        found.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn self_and_arguments_are_found() {
        let sig =
            quote!(fn f(&self, label: &str, (a, b): (u8, u8), S { c, d: e }: S, f @ g: u8) -> R);
        let found = uses(sig.clone(), quote!(self.breaker.clone()));
        assert_eq!(names(&found), ["self"]);
        let found = uses(
            sig.clone(),
            quote!(move |event| {
                let _ = (label, a, b, c, e, f, g);
            }),
        );
        assert_eq!(names(&found), ["label", "a", "b", "c", "e", "f", "g"]);
        // `d` is a field name, not a binding; `Self::X` and `self::X` are paths.
        let found = uses(
            sig,
            quote!((d, Self::X, self::X, crate::label, S { label: 1 }.label)),
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn inner_bindings_shadow_arguments() {
        let sig = quote!(fn f(label: &str, n: u32) -> R);
        let shadowed = [
            quote!(|label: &E| label.is_empty()),
            quote!({
                let label = 1;
                label
            }),
            quote!(match x {
                Some(label) if label > 1 => label,
                label => label,
            }),
            quote!(for label in x {
                drop(label)
            }),
            quote!(if let Some(label) = x
                && label > 1
            {
                label
            } else {
                0
            }),
            quote!(|(label, n)| label + n),
        ];
        for value in shadowed {
            assert_eq!(uses(sig.clone(), value.clone()), [], "{value}");
        }
        // Out of the shadowing scope, the argument again.
        let found = uses(
            sig.clone(),
            quote!({
                {
                    let label = 1;
                }
                label
            }),
        );
        assert_eq!(names(&found), ["label"]);
        let found = uses(sig, quote!(if let Some(label) = x { label } else { label }));
        assert_eq!(names(&found), ["label"]);
    }

    #[test]
    fn macros_and_format_strings_are_searched() {
        let sig = quote!(fn f(&self, label: &str, width: usize) -> R);
        let found = uses(sig.clone(), quote!(move |e| println!("{}: {e:?}", label)));
        assert_eq!(found, [("label".to_owned(), true)]);
        let found = uses(
            sig.clone(),
            quote!(
                |e| tracing::info!(target: "x", attempt = e.attempt, "{label:>width$} {{label}} {0}", 1)
            ),
        );
        assert_eq!(names(&found), ["label", "width"]);
        let found = uses(sig.clone(), quote!(|e| log!(self.level, "{e}")));
        assert_eq!(names(&found), ["self"]);
        // Field names, paths, macro names and named arguments are not values.
        let found = uses(
            sig.clone(),
            quote!(|e| format!(
                "{x}",
                x = e.label,
                y = label::X,
                z = label!(1),
                w = 'label: loop {}
            )),
        );
        assert!(found.is_empty(), "{found:?}");
        // Shadowed by a binding the walk sees, outside the macro.
        let found = uses(sig, quote!(|label: &E| println!("{label}")));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn async_trait_preambles_bind_pattern_arguments() {
        let sig: Signature = syn::parse2(quote!(fn f(&self, __arg1: (u8, u8)) -> R)).unwrap();
        let preamble = quote!(let __self = self; let (a, b) = __arg1;);
        let arguments = Arguments::of(&sig, Some(&preamble));
        assert!(arguments.receiver);
        assert_eq!(arguments.names, ["__arg1", "__self", "a", "b"]);
    }

    #[test]
    fn one_error_per_name_with_a_pointed_message() {
        let sig: Signature = syn::parse2(quote!(fn f(&self, label: &str) -> R)).unwrap();
        let arguments = Arguments::of(&sig, None);
        let value: Expr = syn::parse2(quote!(move |e| {
            self.log(label);
            self.log(label);
            println!("{label}")
        }))
        .unwrap();
        let mut errors = Errors::default();
        check(
            &Ident::new("on_event", Span::call_site()),
            &value,
            &arguments,
            &mut errors,
        );
        let messages: Vec<String> = errors
            .into_result()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(messages.len(), 2, "{messages:#?}");
        assert!(
            messages[0].starts_with(
                "`on_event` cannot use `self`: it is evaluated once for the whole program\n"
            ),
            "{}",
            messages[0]
        );
        assert!(messages[0].contains("`policy = &self.policy`"));
        assert!(messages[1].starts_with(
            "`on_event` cannot use the argument `label`: it is evaluated once for the whole program\n"
        ));
        assert!(messages[1].contains("`policy = ..`"));
    }
}
