//! An early `return` of the wrong type is one error, at the `return`, thanks to the fake return
//! edge that fixes the type of the async block before its body.
#[reflexio::retry]
async fn name(fail: bool) -> Result<String, std::io::Error> {
    if fail {
        return Ok("");
    }
    Ok(String::new())
}

fn main() {}
