//! An empty `#[class()]` names no class: an error, not a silent default.
#[derive(Debug, reflexio::Classify)]
#[class()]
struct Empty;

fn main() {}
