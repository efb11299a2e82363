//! The generated locals are hygienic: the body cannot name them.
#[reflexio::retry]
fn fetch() -> Result<(), std::io::Error> {
    let _ = __reflexio_policy;
    Ok(())
}

fn main() {}
