//! The `crosswalk` binary: see [`crosswalk::cli`] for the commands.

fn main() -> std::process::ExitCode {
    crosswalk::cli::main()
}
