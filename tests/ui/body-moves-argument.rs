//! The body runs once per attempt, so it cannot move an argument out: rustc says so at the
//! user's code, and suggests cloning.
#[reflexio::retry]
fn echo(s: String) -> Result<String, std::io::Error> {
    Ok(s)
}

fn main() {}
