#[reflexio::retry(strategy, max_attempts = , seed = 1 2)]
fn fetch() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {
    let _ = fetch();
}
