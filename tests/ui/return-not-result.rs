#[reflexio::retry]
fn count() -> u32 {
    1
}

fn main() {
    let _: u32 = count();
}
