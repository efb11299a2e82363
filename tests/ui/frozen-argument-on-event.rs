// The hook is made once for the whole program: every call would log the first call's label.
use reflexio::TransientError;

#[reflexio::retry(on_event = move |e| println!("{label}: {e}"))]
fn in_a_format_string(label: &'static str) -> Result<(), TransientError> {
    let _ = label;
    Ok(())
}

fn log(label: &str, event: &reflexio::RetryEvent<'_>) {
    println!("{label}: {event}");
}

#[reflexio::retry(on_event = move |e| log(label, e))]
fn in_a_closure(label: String) -> Result<(), TransientError> {
    let _ = &label;
    Ok(())
}

// A closure parameter of the same name shadows the argument: no error.
#[reflexio::retry(on_event = |label| println!("{label}"))]
fn shadowed(label: String) -> Result<(), TransientError> {
    let _ = &label;
    Ok(())
}

// Inside a macro `#[retry]` cannot tell the macro's own bindings from the argument.
#[reflexio::retry(on_event = |e| assert!(matches!(e.operation, Some(label) if !label.is_empty())))]
fn bound_inside_a_macro(label: String) -> Result<(), TransientError> {
    let _ = &label;
    Ok(())
}

fn main() {
    let _ = (
        in_a_format_string("a"),
        in_a_closure("b".into()),
        shadowed("c".into()),
        bound_inside_a_macro("d".into()),
    );
}
