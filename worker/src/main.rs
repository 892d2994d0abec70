//! `kubecrawl-worker` with the built-in spiders (`link`, `wandering`).

use std::process::ExitCode;

fn main() -> ExitCode {
    kubecrawl_worker::main(kubecrawl_worker::spider::Registry::builtin())
}
