#[reflexio::retry]
extern "C" fn callback(x: i32) -> Result<i32, std::io::Error> {
    Ok(x)
}

fn main() {
    let _ = callback(1);
}
