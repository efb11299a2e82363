#[reflexio::retry]
fn run() {}

fn main() {
    run();
}
