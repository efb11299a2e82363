#[reflexio::retry(max_attempts = 3, strategy = reflexio::strategies::no_delay(), max_attempts = 4)]
fn fetch() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {
    let _ = fetch();
}
