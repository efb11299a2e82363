//! A body that may mutate its arguments runs in a loop generated in the function (each attempt
//! borrows them in turn): moving one out fails at the user's code there too.
#[reflexio::retry]
async fn echo(mut s: String) -> Result<String, std::io::Error> {
    s.push('!');
    Ok(s)
}

fn main() {}
