//! `kubecrawl`: parses the command line and runs the command ([`kubecrawl_process::main`]
//! starts logging and the shutdown signal; on failure it prints the error chain once and
//! exits non-zero).

use std::process::ExitCode;

use clap::Parser;
use kubecrawl_cli::args::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    kubecrawl_process::main(&cli.log, |shutdown| {
        kubecrawl_cli::run(cli.command, shutdown)
    })
}
