//! kubecrawl-process: what every kubecrawl process (`kubecrawl-operator`, `kubecrawl-worker`
//! and custom worker binaries, `kubecrawl`) does the same way, written once.
//!
//! A `main.rs` parses its arguments and hands the rest to [`main`]: logging starts, a
//! runtime starts, SIGTERM/SIGINT trip the shutdown token, the program runs, and a failure is
//! printed once and ends the process non-zero.
//!
//! What this crate is not: it knows nothing of crawling. It owns no metric (each binary
//! registers its own and says when it is ready), no Redis key and no topic.
//!
//! # Tour
//! - [`log`]: `--log` and `--log-format` and the subscriber they describe.
//! - [`shutdown`]: the one [`CancellationToken`] that SIGTERM or SIGINT cancels.
//! - [`admin`]: the admin server, `/metrics`, `/healthz` and `/readyz`, over a binary's own
//!   registry and readiness.
//! - [`fatal`]: how a process that cannot go on says why and exits; [`format_chain`], an
//!   error and its sources on one line, for that and for log fields.
//! - [`tasks`]: named, instrumented tasks owned by their process, and which of them ended.
//! - [`connect`]: the Redis and Kafka connection flags (TLS, authentication) and the start-up
//!   checks.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

pub mod admin;
pub mod connect;
pub mod fatal;
pub mod log;
pub mod shutdown;
pub mod tasks;

/// What can go wrong in the plumbing itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--log` is not a filter in `tracing` syntax.
    #[error("--log is not a valid tracing filter")]
    LogFilter {
        /// The parser's error.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// The async runtime could not be started.
    #[error("starting the async runtime failed")]
    Runtime {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The admin server's address could not be bound.
    #[error("binding {addr} failed")]
    AdminBind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The admin server stopped with an error.
    #[error("the admin server on {addr} failed")]
    AdminServe {
        /// The address it served on.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its sources, `: `-separated, for one log field or one line on stderr.
pub fn format_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// The body of every kubecrawl `main`: starts logging as `log` says, starts a multi-threaded
/// runtime, runs `program` with the shutdown token ([`shutdown::on_signal`]), and turns its
/// result into the exit code.
///
/// # Guarantees
/// `ExitCode::SUCCESS` only when `program` returned `Ok`. Any failure — a bad `--log`, a
/// runtime that cannot start, `program`'s error — is printed once by [`fatal::report`] and
/// ends the process with `ExitCode::FAILURE`.
pub fn main<F, Fut, E>(log: &log::LogArgs, program: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error + 'static,
{
    if let Err(e) = log::init(log) {
        return fatal::report(&e);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(source) => return fatal::report(&Error::Runtime { source }),
    };
    runtime.block_on(async move {
        match program(shutdown::on_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fatal::report(&e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_chain_names_every_layer_once() {
        let err = Outer(std::io::Error::other("inner"));
        assert_eq!(format_chain(&err), "outer: inner");
    }
}
