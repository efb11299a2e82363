//! Implementation detail of the `reflexio` crate: use `reflexio::retry` and
//! `reflexio::Classify` instead.
