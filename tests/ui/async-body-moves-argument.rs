//! The async body runs once per attempt too: moving an argument out fails at the user's code, with
//! rustc's advice to clone it.
#[reflexio::retry]
async fn echo(s: String) -> Result<String, std::io::Error> {
    Ok(s)
}

fn main() {}
