// Beyond `Duration::MAX`: once a panic of the macro ("attempt to add with overflow") in a debug
// build, and a silent deadline of about 131 ms in a release build.
#[reflexio::retry(deadline = "340282366920938463463374607431.9s")]
fn overflowing() -> Result<(), std::io::Error> {
    Ok(())
}

#[reflexio::retry(deadline = "18446744073709551616s")]
async fn one_second_too_long() -> Result<(), std::io::Error> {
    Ok(())
}

#[reflexio::retry(attempt_timeout = "0.000000000001h")]
async fn not_whole_nanoseconds() -> Result<(), std::io::Error> {
    Ok(())
}

fn main() {
    let _ = (overflowing(), one_second_too_long(), not_whole_nanoseconds());
}
