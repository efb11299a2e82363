// A constructor's path instead of its value: once rustc's E0593 "expected to take 2 arguments".
use reflexio::strategies::{self, exponential};

#[reflexio::retry(strategy = exponential)]
fn fetch() -> Result<(), std::io::Error> {
    Ok(())
}

#[reflexio::retry(strategy = strategies::full_jitter, rate_limit = reflexio::strategies::constant)]
fn per_class() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {
    let _ = (fetch(), per_class());
}
