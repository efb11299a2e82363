struct Opaque;

#[reflexio::retry(classifier = |_: &Opaque| reflexio::ErrorClass::Transient)]
fn fetch() -> Result<(), Opaque> {
    Err(Opaque)
}

fn main() {
    let _ = fetch();
}
