use std::time::Duration;

#[derive(Debug, reflexio::Classify)]
enum ApiError {
    #[class(transient)]
    #[class(server_error)]
    Timeout,
    #[class(rate_limit, transient)]
    Throttled {
        #[retry_after]
        wait: Duration,
        #[retry_after]
        again: Duration,
    },
}

fn main() {}
