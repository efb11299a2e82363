#[reflexio::retry(strategy = 5)]
fn fetch() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {}
