//! The integration tests' package: it owns the top-level `tests/`, which use the `reflexio`
//! facade exactly as a user's crate would.
//!
//! Its documentation is the README, so that every Rust block of the README compiles and runs as
//! a doc test under `cargo test --workspace`.
#![doc = include_str!("../../README.md")]
// The README is prose for people first: product names need no backticks there.
#![allow(clippy::doc_markdown)]

/// The facade's crate docs carry the README's "Guarantees" section (`reflexio/src/guarantees.md`):
/// the two say the same thing.
#[cfg(test)]
mod guarantees {
    #[test]
    fn the_crate_docs_and_the_readme_list_the_same_guarantees() {
        let readme = include_str!("../../README.md");
        let docs = include_str!("../../reflexio/src/guarantees.md");
        let body = docs
            .strip_prefix("# Guarantees\n")
            .expect("the section's heading");
        assert!(
            readme.contains(&format!("## Guarantees\n{body}")),
            "README.md's Guarantees section and reflexio/src/guarantees.md differ"
        );
    }
}
