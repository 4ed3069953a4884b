//! The `gatehouse` binary: everything is in the library; see `gatehouse::cli`.

fn main() -> std::process::ExitCode {
    gatehouse::cli::run()
}
