//! The `switchyard` binary: parse the command line, hand it to the library.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    switchyard::cli::run(switchyard::cli::Cli::parse())
}
