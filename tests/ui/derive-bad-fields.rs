#[derive(Debug, reflexio::Classify)]
enum ApiError {
    #[class(from_source)]
    Wrapped(std::io::Error, String),
    #[class(status = status)]
    Http { code: u16 },
}

#[derive(Debug, reflexio::Classify)]
struct Unclassified;

fn main() {}
