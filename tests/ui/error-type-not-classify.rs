//! Without `classifier = ..`, the error type must classify itself.
#[derive(Debug)]
struct PlainError;

#[reflexio::retry]
fn fetch() -> Result<(), PlainError> {
    Err(PlainError)
}

fn main() {
    let _ = fetch();
}
