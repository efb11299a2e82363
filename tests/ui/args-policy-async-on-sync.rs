use std::sync::LazyLock;

static ASYNC: LazyLock<reflexio::AsyncRetryPolicy<std::io::Error>> =
    LazyLock::new(|| reflexio::AsyncRetryPolicy::builder().build().unwrap());

#[reflexio::retry(policy = ASYNC)]
fn fetch() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {
    let _ = fetch();
}
