//! `kubecrawl-operator`: parses the command line and runs the operator
//! ([`kubecrawl_process::main`] starts logging and the shutdown signal, and prints a fatal
//! error).

use std::process::ExitCode;

use clap::Parser;
use kubecrawl_operator::args::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    let log = args.log.clone();
    kubecrawl_process::main(&log, |shutdown| kubecrawl_operator::run(args, shutdown))
}
