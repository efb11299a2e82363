#[reflexio::retry(attempt_timeout = "1s")]
fn fetch() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {
    let _ = fetch();
}
