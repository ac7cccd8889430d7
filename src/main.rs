//! The `bindery` binary: parse the command line and run it. Everything else is in the library.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = bindery::cli::Cli::parse();
    match bindery::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One clear message (with its causes) and a non-zero exit.
            eprintln!("bindery: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
