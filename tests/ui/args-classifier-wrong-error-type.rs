#[derive(Debug)]
struct ApiError;

#[reflexio::retry(classifier = |_: &std::io::Error| reflexio::ErrorClass::Transient)]
fn fetch() -> Result<(), ApiError> {
    Err(ApiError)
}

fn main() {}
