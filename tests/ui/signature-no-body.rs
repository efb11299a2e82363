trait Fetch {
    #[reflexio::retry]
    fn fetch(&self) -> Result<(), std::io::Error>;
}

fn main() {}
