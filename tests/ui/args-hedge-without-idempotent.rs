// Hedging runs the body twice at once: `hedge_after` needs the function's own statement
// that this is safe, and a hedged body cannot hold a `&mut` borrow.
#[reflexio::retry(hedge_after = "10ms")]
async fn charge(amount: u32) -> Result<u32, std::io::Error> {
    Ok(amount)
}

#[reflexio::retry(hedge_after = "10ms", idempotent = true)]
async fn bump(counter: &mut u32) -> Result<u32, std::io::Error> {
    *counter += 1;
    Ok(*counter)
}

#[reflexio::retry(idempotent = true)]
fn sync_get() -> Result<u32, std::io::Error> {
    Ok(1)
}

fn main() {
    let _ = charge(1);
    let _ = bump(&mut 0);
    let _ = sync_get();
}
