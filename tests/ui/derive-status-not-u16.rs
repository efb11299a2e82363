#[derive(Debug, reflexio::Classify)]
enum ApiError {
    #[class(status = code)]
    Http { code: String },
}

fn main() {}
