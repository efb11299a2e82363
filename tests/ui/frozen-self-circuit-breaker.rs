// The policy is built once for the whole program: instance A's breaker would guard every
// instance's calls.
use reflexio::{CircuitBreaker, CircuitOpen};

#[derive(Debug)]
struct Error;

impl reflexio::Classify for Error {
    fn classification(&self) -> reflexio::Classification {
        reflexio::ErrorClass::Transient.into()
    }
}

impl From<CircuitOpen> for Error {
    fn from(_: CircuitOpen) -> Self {
        Error
    }
}

struct Client {
    breaker: CircuitBreaker,
}

impl Client {
    #[reflexio::retry(circuit_breaker = self.breaker.clone())]
    fn fetch(&self) -> Result<(), Error> {
        Ok(())
    }

    #[reflexio::retry(strategy = Self::STRATEGY, circuit_breaker = BREAKER.clone())]
    fn fine(&self) -> Result<(), Error> {
        Ok(())
    }

    const STRATEGY: reflexio::strategies::NoDelay = reflexio::strategies::no_delay();
}

static BREAKER: std::sync::LazyLock<CircuitBreaker> =
    std::sync::LazyLock::new(|| CircuitBreaker::builder().build().unwrap());

fn main() {
    let client = Client { breaker: BREAKER.clone() };
    let _ = (client.fetch(), client.fine());
}
