//! The `earshot` binary: a thin edge over the library's [`earshot::cli`].

fn main() {
    std::process::exit(earshot::cli::main());
}
