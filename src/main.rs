//! The `xbake` binary: everything lives in the library; see `cli`.

fn main() -> std::process::ExitCode {
    xbake::cli::main()
}
