//! Implementation detail of the `reflexio` crate: use `reflexio::retry` and
//! `reflexio::Classify` instead.

mod expand;
mod parse;

use proc_macro::TokenStream;

/// Retries the function.
#[proc_macro_attribute]
pub fn retry(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::retry(args.into(), item.into()).into()
}
