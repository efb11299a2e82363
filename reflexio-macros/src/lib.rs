//! Implementation detail of the `reflexio` crate: use `reflexio::retry` and
//! `reflexio::Classify` instead.

mod classify;
mod expand;
mod parse;

use proc_macro::TokenStream;

/// Retries the function.
#[proc_macro_attribute]
pub fn retry(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::retry(args.into(), item.into()).into()
}

/// Derives `reflexio::Classify`.
#[proc_macro_derive(Classify, attributes(class, retry_after, source))]
pub fn derive_classify(input: TokenStream) -> TokenStream {
    classify::derive(input.into()).into()
}
