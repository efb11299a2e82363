//! `#[derive(Classify)]`: an error type's class, declared on its variants.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Fields, Ident, Member};

use crate::parse::{Errors, edit_distance};

/// The class names `#[class(..)]` accepts, with the `ErrorClass` variant of each.
const CLASSES: [(&str, &str); 8] = [
    ("auth", "Auth"),
    ("permission", "Permission"),
    ("permanent", "Permanent"),
    ("concurrency", "Concurrency"),
    ("rate_limit", "RateLimit"),
    ("server_error", "ServerError"),
    ("transient", "Transient"),
    ("unknown", "Unknown"),
];

/// How one variant (or the struct) is classified.
enum Rule {
    /// A fixed class: the `ErrorClass` variant's name.
    Class(Ident),
    /// `from_source`: the field whose own `Classify` decides.
    FromSource(Member, syn::Type),
    /// `status = field`: `classify_status` on a `u16` field.
    Status(Member, syn::Type),
}

/// What the `#[class(..)]` attributes of one item say.
#[derive(Default)]
struct ClassAttr {
    /// The classification, with the span of its attribute.
    rule: Option<(RuleSpec, Span)>,
    default: Option<Ident>,
    krate: Option<syn::Path>,
    /// A `#[class]` attribute here was invalid, and already reported: a missing class is then
    /// not reported again. (A valid one that sets no class, such as `#[class(crate = ..)]`
    /// alone, reports nothing, so the missing class is.)
    reported: bool,
}

/// A rule as written, before its field is looked up.
enum RuleSpec {
    Class(Ident),
    FromSource,
    Status(Member),
}

fn class_message(name: &str) -> String {
    let lower = to_snake_case(name);
    let close = CLASSES
        .iter()
        .map(|(c, _)| (*c, edit_distance(&lower, c)))
        .filter(|(_, d)| *d <= 2)
        .min_by_key(|(_, d)| *d)
        .map(|(close, _)| format!("; did you mean `{close}`?"))
        .unwrap_or_default();
    let list: Vec<String> = CLASSES.iter().map(|(c, _)| format!("`{c}`")).collect();
    format!(
        "unknown error class `{name}`{close}\nexpected one of: {}, or `from_source`, `status = field`",
        list.join(", ")
    )
}

fn to_snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The `ErrorClass` variant for a `snake_case` class name, or an error at `ident`.
fn class_variant(ident: &Ident, errors: &mut Errors) -> Option<Ident> {
    let name = ident.to_string();
    if let Some((_, variant)) = CLASSES.iter().find(|(c, _)| *c == name) {
        Some(Ident::new(variant, ident.span()))
    } else {
        errors.at(ident.span(), class_message(&name));
        None
    }
}

/// Parses every `#[class(..)]` among `attrs`. `on_type` allows `default` and `crate`;
/// `allow_rule` allows a classification.
fn parse_class_attrs(
    attrs: &[Attribute],
    on_type: bool,
    allow_rule: bool,
    errors: &mut Errors,
) -> ClassAttr {
    let mut out = ClassAttr::default();
    let before = errors.count();
    for attr in attrs.iter().filter(|a| a.path().is_ident("class")) {
        let syn::Meta::List(list) = &attr.meta else {
            errors.spanned(
                attr,
                "expected `#[class(..)]` with a class, such as `#[class(transient)]`",
            );
            continue;
        };
        if list.tokens.is_empty() {
            errors.spanned(
                attr,
                "expected a class in `#[class(..)]`, such as `#[class(transient)]`",
            );
            continue;
        }
        let result = list.parse_nested_meta(|meta| {
            let path = &meta.path;
            let Some(ident) = path.get_ident() else {
                return Err(meta.error("expected a class name, such as `transient`"));
            };
            let name = ident.to_string();
            let mut set_rule = |spec: RuleSpec, errors: &mut Errors| {
                if !allow_rule {
                    errors.at(
                        ident.span(),
                        "the class of an enum goes on each variant\nput `#[class(..)]` on the variants, or use `#[class(default = ..)]` here",
                    );
                } else if out.rule.is_some() {
                    errors.at(
                        ident.span(),
                        "duplicate class\nan error has exactly one `#[class(..)]`",
                    );
                } else {
                    out.rule = Some((spec, ident.span()));
                }
            };
            match name.as_str() {
                "default" => {
                    let value: Ident = meta.value()?.parse()?;
                    if !on_type || allow_rule {
                        errors.at(
                            ident.span(),
                            "`default` goes on the enum, not on a variant or a struct",
                        );
                    } else if out.default.is_some() {
                        errors.at(ident.span(), "duplicate `default`");
                    } else if let Some(v) = class_variant(&value, errors) {
                        out.default = Some(v);
                    }
                }
                "crate" => {
                    let value = meta.value()?;
                    let path = if value.peek(syn::LitStr) {
                        value.parse::<syn::LitStr>()?.parse()?
                    } else {
                        value.call(syn::Path::parse_mod_style)?
                    };
                    if on_type {
                        out.krate = Some(path);
                    } else {
                        errors.at(ident.span(), "`crate` goes on the type, not on a variant");
                    }
                }
                "from_source" => set_rule(RuleSpec::FromSource, errors),
                "status" => {
                    let value = meta.value()?;
                    let member: Member = value.parse()?;
                    set_rule(RuleSpec::Status(member), errors);
                }
                _ => {
                    if let Some(v) = class_variant(ident, errors) {
                        set_rule(RuleSpec::Class(v), errors);
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            errors.push(e);
        }
    }
    out.reported = errors.count() > before;
    out
}

/// The classification of one variant or struct: its rule, and its `#[retry_after]` field.
struct Arm {
    rule: Rule,
    retry_after: Option<(Member, syn::Type)>,
}

fn field_member(i: usize, field: &syn::Field) -> Member {
    match &field.ident {
        Some(ident) => Member::Named(ident.clone()),
        None => Member::Unnamed(syn::Index {
            index: u32::try_from(i).expect("fewer than 2^32 fields"),
            span: field.ty.span(),
        }),
    }
}

fn find_retry_after(fields: &Fields, errors: &mut Errors) -> Option<(Member, syn::Type)> {
    let mut found: Option<(Member, syn::Type)> = None;
    for (i, field) in fields.iter().enumerate() {
        for attr in field
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("retry_after"))
        {
            if !matches!(attr.meta, syn::Meta::Path(_)) {
                errors.spanned(attr, "`#[retry_after]` takes no arguments");
            }
            if found.is_some() {
                errors.spanned(
                    attr,
                    "duplicate `#[retry_after]`\nonly one field can hold the server's delay",
                );
            } else {
                found = Some((field_member(i, field), field.ty.clone()));
            }
        }
    }
    found
}

/// The field `from_source` delegates to: the `#[source]` (or thiserror's `#[from]`) field, else
/// a field named `source`, else the only field.
fn source_field(fields: &Fields) -> Option<(Member, syn::Type)> {
    let all: Vec<_> = fields.iter().enumerate().collect();
    let marked = all.iter().find(|(_, f)| {
        f.attrs
            .iter()
            .any(|a| a.path().is_ident("source") || a.path().is_ident("from"))
    });
    let named = all
        .iter()
        .find(|(_, f)| f.ident.as_ref().is_some_and(|i| i == "source"));
    let only = (all.len() == 1).then(|| &all[0]);
    marked
        .or(named)
        .or(only)
        .map(|(i, f)| (field_member(*i, f), f.ty.clone()))
}

/// Resolves a rule's field in `fields`.
fn resolve(
    spec: RuleSpec,
    attr_span: Span,
    name: &Ident,
    fields: &Fields,
    errors: &mut Errors,
) -> Option<Rule> {
    match spec {
        RuleSpec::Class(c) => Some(Rule::Class(c)),
        RuleSpec::FromSource => {
            if let Some((m, ty)) = source_field(fields) {
                Some(Rule::FromSource(m, ty))
            } else {
                errors.at(
                    attr_span,
                    format!(
                        "`#[class(from_source)]` on `{name}` needs the field to classify\nmark it `#[source]`, or give `{name}` exactly one field"
                    ),
                );
                None
            }
        }
        RuleSpec::Status(member) => {
            let found = fields
                .iter()
                .enumerate()
                .find(|(i, f)| field_member(*i, f) == member);
            if let Some((_, f)) = found {
                Some(Rule::Status(member, f.ty.clone()))
            } else {
                let shown = match &member {
                    Member::Named(i) => i.to_string(),
                    Member::Unnamed(i) => i.index.to_string(),
                };
                errors.spanned(
                    &member,
                    format!("`{name}` has no field `{shown}`\n`status = ..` names the `u16` field holding the HTTP status"),
                );
                None
            }
        }
    }
}

// Input:
//     #[derive(Classify)]
//     #[class(default = unknown)]
//     enum ApiError {
//         #[class(rate_limit)] Throttled { #[retry_after] wait: Duration },
//         #[class(status = code)] Http { code: u16 },
//         Other,
//     }
//
// Output:
//     #[automatically_derived]
//     impl ::reflexio::__private::Classify for ApiError {
//         fn classification(&self) -> ::reflexio::__private::Classification {
//             match self {
//                 ApiError::Throttled { wait: __reflexio_retry_after, .. } =>
//                     with_retry_after(Classification::new(ErrorClass::RateLimit), __reflexio_retry_after),
//                 ApiError::Http { code: __reflexio_field, .. } => status_classification(__reflexio_field),
//                 ApiError::Other { .. } => Classification::new(ErrorClass::Unknown),
//             }
//         }
//     }
#[allow(clippy::too_many_lines)] // one pass over the input, reading top to bottom
pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(e) => return e.into_compile_error(),
    };
    let mut errors = Errors::default();
    let name = &input.ident;
    let (arms, krate) = match &input.data {
        Data::Enum(data) => {
            let top = parse_class_attrs(&input.attrs, true, false, &mut errors);
            let mut arms = Vec::new();
            for variant in &data.variants {
                let attr = parse_class_attrs(&variant.attrs, false, true, &mut errors);
                let retry_after = find_retry_after(&variant.fields, &mut errors);
                let rule = match attr.rule {
                    Some((spec, span)) => {
                        resolve(spec, span, &variant.ident, &variant.fields, &mut errors)
                    }
                    None => {
                        if let Some(default) = &top.default {
                            Some(Rule::Class(default.clone()))
                        } else if attr.reported || top.reported {
                            // Its `#[class]` (or the enum's) is invalid, and already reported.
                            None
                        } else {
                            errors.at(
                                variant.ident.span(),
                                format!(
                                    "variant `{}` has no error class\nadd `#[class(transient)]` (or another class) to it, or `#[class(default = unknown)]` to `{name}`",
                                    variant.ident
                                ),
                            );
                            None
                        }
                    }
                };
                if let Some(rule) = rule {
                    let variant_ident = &variant.ident;
                    arms.push((quote!(#name::#variant_ident), Arm { rule, retry_after }));
                }
            }
            (arms, top.krate)
        }
        Data::Struct(data) => {
            let attr = parse_class_attrs(&input.attrs, true, true, &mut errors);
            let retry_after = find_retry_after(&data.fields, &mut errors);
            let rule = if let Some((spec, span)) = attr.rule {
                resolve(spec, span, name, &data.fields, &mut errors)
            } else if attr.reported {
                None
            } else {
                errors.at(
                    name.span(),
                    format!(
                        "`{name}` has no error class\nadd `#[class(transient)]` (or another class) to it"
                    ),
                );
                None
            };
            let arms = rule
                .map(|rule| (quote!(#name), Arm { rule, retry_after }))
                .into_iter()
                .collect();
            (arms, attr.krate)
        }
        Data::Union(u) => {
            errors.at(
                u.union_token.span,
                "`#[derive(Classify)]` supports enums and structs, not unions",
            );
            (Vec::new(), None)
        }
    };
    let krate = krate.map_or_else(|| quote!(::reflexio), |p| p.to_token_stream());
    let k = &krate;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let mut where_clause = where_clause.cloned();
    let is_empty_enum = matches!(&input.data, Data::Enum(d) if d.variants.is_empty());
    let body = if let Err(e) = errors.into_result() {
        // Keep the impl, with a body that compiles: code using the type's `Classify` gets no
        // follow-on errors, only these.
        let error = e.into_compile_error();
        quote!(#error #k::__private::Classification::new(#k::__private::ErrorClass::Unknown))
    } else if is_empty_enum {
        // A reference to an empty enum is not itself empty: match on the value.
        quote!(match *self {})
    } else {
        let has_generics = input.generics.type_params().next().is_some();
        let arms = arms.into_iter().map(|(path, arm)| {
            let mut pattern = Vec::new();
            let classification = match &arm.rule {
                Rule::Class(class) => {
                    quote!(#k::__private::Classification::new(#k::__private::ErrorClass::#class))
                }
                Rule::FromSource(member, ty) => {
                    let binding = format_ident!("__reflexio_source", span = ty.span());
                    pattern.push(quote!(#member: #binding));
                    if has_generics {
                        where_clause
                            .get_or_insert_with(|| syn::parse_quote!(where))
                            .predicates
                            .push(syn::parse_quote!(#ty: #k::__private::Classify));
                    }
                    quote_spanned!(ty.span()=> #k::__private::source_classification(#binding))
                }
                Rule::Status(member, ty) => {
                    let binding = format_ident!("__reflexio_status", span = ty.span());
                    pattern.push(quote!(#member: #binding));
                    quote_spanned!(ty.span()=> #k::__private::status_classification(#binding))
                }
            };
            let classification = if let Some((member, ty)) = &arm.retry_after {
                let binding = format_ident!("__reflexio_retry_after", span = ty.span());
                pattern.push(quote!(#member: #binding));
                quote_spanned!(ty.span()=> #k::__private::with_retry_after(#classification, #binding))
            } else {
                classification
            };
            quote!(#path { #(#pattern,)* .. } => #classification,)
        });
        quote! {
            match self {
                #(#arms)*
            }
        }
    };
    quote! {
        #[automatically_derived]
        impl #impl_generics #k::__private::Classify for #name #ty_generics #where_clause {
            fn classification(&self) -> #k::__private::Classification {
                #body
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CLASSES: [&str; 8] = [
        "auth",
        "permission",
        "permanent",
        "concurrency",
        "rate_limit",
        "server_error",
        "transient",
        "unknown",
    ];

    /// Expands `item`; `None` when the expansion is an error.
    fn expand(item: &str) -> Option<String> {
        let tokens: TokenStream = item.parse().expect("test items tokenize");
        let out = derive(tokens).to_string();
        (!out.contains("compile_error")).then_some(out)
    }

    /// `#[class(crate = ..)]` alone sets no class: the missing class is reported, on a struct
    /// and on an enum's variant (the property test below once found it accepted).
    #[test]
    fn a_crate_path_alone_is_not_a_class() {
        for item in [
            "#[class(crate = a)] struct E { code: u16 }",
            "#[class(crate = \"my::rx\")] struct E;",
            "#[class(crate = a)] enum E { A }",
        ] {
            let out = derive(item.parse().unwrap()).to_string();
            assert!(out.contains("has no error class"), "{item}: {out}");
        }
        assert!(expand("#[class(crate = a, transient)] struct E;").is_some());
        assert!(expand("#[class(crate = a, default = unknown)] enum E { A }").is_some());
    }

    #[test]
    fn every_class_name_is_accepted() {
        for class in CLASSES {
            assert!(
                expand(&format!("#[class({class})] struct E;")).is_some(),
                "{class}"
            );
        }
    }

    /// Hostile fragments for the inside of `#[class(..)]`: keys, values, literals, signs,
    /// Unicode, nesting.
    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(CLASSES.to_vec()).prop_map(str::to_owned),
            proptest::sample::select(vec![
                "default",
                "status",
                "from_source",
                "crate",
                "=",
                ",",
                "-",
                "+",
                "42",
                "1.5",
                "\"x\"",
                "\"\"",
                "::",
                "Transient",
                "RateLimit",
                "rate-limit",
                "()",
                "(x)",
                "[]",
                "'a",
                "self",
                "_",
                "é",
                "trânsient",
                "0x10",
                "-1",
            ])
            .prop_map(str::to_owned),
            "[a-z_][a-z0-9_]{0,10}",
        ]
    }

    proptest! {
        /// A single identifier is accepted exactly when it is one of the 8 class names.
        #[test]
        fn one_name_is_accepted_exactly_when_it_is_a_class(name in "[a-zA-Z_][a-zA-Z0-9_]{0,14}") {
            prop_assume!(syn::parse_str::<syn::Ident>(&name).is_ok());
            let accepted = expand(&format!("#[class({name})] struct E;")).is_some();
            prop_assert_eq!(accepted, CLASSES.contains(&name.as_str()), "{}", name);
        }

        /// Any sequence of fragments inside `#[class(..)]`, on a struct and on an enum's
        /// variant, expands without panicking; one is accepted only when it names a class or
        /// the `status` field, and a lone class name always is.
        #[test]
        fn hostile_attributes_never_panic(parts in proptest::collection::vec(fragment(), 0..6)) {
            let inside = parts.join(" ");
            let item = format!("#[class({inside})] struct E {{ code: u16 }}");
            prop_assume!(item.parse::<TokenStream>().is_ok());
            let accepted = expand(&item).is_some();
            let names_a_rule = parts
                .iter()
                .any(|p| CLASSES.contains(&p.as_str()) || p == "status" || p == "from_source");
            prop_assert!(!accepted || names_a_rule, "accepted {}", inside);
            if parts.len() == 1 && CLASSES.contains(&parts[0].as_str()) {
                prop_assert!(accepted, "rejected {}", inside);
            }
            let variant = format!("enum E {{ #[class({inside})] A {{ code: u16 }} }}");
            prop_assume!(variant.parse::<TokenStream>().is_ok());
            let _ = expand(&variant);
        }
    }
}
