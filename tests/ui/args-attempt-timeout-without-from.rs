// The error type must implement `From<AttemptTimedOut>`: an attempt that times out returns it.
#[derive(Debug, reflexio::Classify)]
#[class(transient)]
struct ApiError;

#[reflexio::retry(attempt_timeout = "2s")]
async fn fetch() -> Result<(), ApiError> {
    Ok(())
}

fn main() {
    let _ = fetch();
}
