//! The compile-time checks of `#[retry]` and `#[derive(Classify)]`: every misuse in `ui/` fails
//! with the error pinned in its `.stderr`.
//!
//! rustc's wording changes between releases, so the `.stderr` files are pinned to the stable
//! toolchain this repository is developed with (1.95). After a toolchain update, re-bless with
//! `TRYBUILD=overwrite cargo test -p reflexio-tests --test compiletest` and review the diff.

#[test]
#[cfg_attr(miri, ignore = "incompatible with miri")]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/*.rs");
}
