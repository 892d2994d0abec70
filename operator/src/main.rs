//! `kubecrawl-operator`: parses the command line, starts logging, runs the operator.

use anyhow::Context;
use clap::Parser;
use kubecrawl_operator::args::{Args, LogFormat};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = EnvFilter::try_new(&args.log).context("--log is not a valid tracing filter")?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match args.log_format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(signal(shutdown.clone()));
    kubecrawl_operator::run(args, shutdown)
        .await
        .map_err(|e| anyhow::anyhow!(kubecrawl_operator::format_chain(&e)))
}

async fn signal(token: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => {},
    }
    tracing::info!("shutdown requested");
    token.cancel();
}
