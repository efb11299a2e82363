use std::sync::LazyLock;

static POLICY: LazyLock<reflexio::RetryPolicy<std::io::Error>> =
    LazyLock::new(|| reflexio::RetryPolicy::builder().build().unwrap());

#[reflexio::retry(policy = POLICY, max_attempts = 3, deadline = "1s")]
fn fetch() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {
    let _ = fetch();
}
