// The budget is taken once for the whole program: every call would share the first call's.
use reflexio::{RetryBudget, TransientError};

#[reflexio::retry(budget = budget.clone(), deadline = timeout)]
fn fetch(budget: &RetryBudget, timeout: std::time::Duration) -> Result<(), TransientError> {
    let _ = (budget, timeout);
    Ok(())
}

fn main() {
    let _ = fetch(&RetryBudget::aws_standard(), std::time::Duration::from_secs(1));
}
