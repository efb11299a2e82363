#[reflexio::retry(deadline = "30 seconds")]
fn spaced() -> Result<(), std::io::Error> {
    Ok(())
}

#[reflexio::retry(deadline = "3d")]
fn days() -> Result<(), std::io::Error> {
    Ok(())
}

#[reflexio::retry(deadline = "250")]
fn no_unit() -> Result<(), std::io::Error> {
    Ok(())
}

#[reflexio::retry(deadline = "0s")]
fn zero() -> Result<(), std::io::Error> {
    Ok(())
}

#[reflexio::retry(deadline = 30)]
fn not_a_string() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {
    let _ = (spaced(), days(), no_unit(), zero(), not_a_string());
}
