#[derive(Debug, reflexio::Classify)]
enum ApiError {
    #[class(transient)]
    Timeout,
    Throttled,
    Gone { code: u16 },
}

fn main() {}
