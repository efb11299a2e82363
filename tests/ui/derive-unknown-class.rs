#[derive(Debug, reflexio::Classify)]
enum ApiError {
    #[class(Transient)]
    Timeout,
    #[class(flaky)]
    Flaky,
}

#[derive(Debug, reflexio::Classify)]
#[class(default = ratelimit)]
enum Other {
    A,
}

fn main() {}
