const MAX: u32 = 3;

#[reflexio::retry(max_attempts = "3")]
fn string() -> Result<(), std::io::Error> {
    Ok(())
}

#[reflexio::retry(max_attempts = MAX)]
fn constant() -> Result<(), std::io::Error> {
    Ok(())
}

#[reflexio::retry(max_attempts = 2.5)]
fn float() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {
    let _ = (string(), constant(), float(), MAX);
}
