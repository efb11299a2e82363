// Bindings of a pattern argument are arguments too.
use reflexio::TransientError;

struct Seeds {
    jitter: u64,
}

#[reflexio::retry(seed = (a + b) as u64)]
fn tuple((a, b): (u8, u8)) -> Result<(), TransientError> {
    let _ = (a, b);
    Ok(())
}

#[reflexio::retry(seed = jitter, strategy = reflexio::strategies::full_jitter())]
fn fields(Seeds { jitter }: Seeds) -> Result<(), TransientError> {
    let _ = jitter;
    Ok(())
}

fn main() {
    let _ = (tuple((1, 2)), fields(Seeds { jitter: 3 }));
}
