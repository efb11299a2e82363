// Every mistake of one attribute is reported in one build, each at its tokens, and the function
// is still emitted: the call in `main` gets no follow-on error.
#[reflexio::retry(max_attempts = 0, retries = 3, strategy = a(), strategy = b(), deadline = "30 sec")]
fn fetch(id: u64) -> Result<u64, std::io::Error> {
    Ok(id)
}

fn main() {
    let _ = fetch(1);
}
