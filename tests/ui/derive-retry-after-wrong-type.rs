#[derive(Debug, reflexio::Classify)]
enum ApiError {
    #[class(rate_limit)]
    Throttled {
        #[retry_after]
        wait_secs: u64,
    },
}

fn main() {}
