//! The one shutdown signal of a process: a [`CancellationToken`] that SIGTERM (what the
//! kubelet sends) or SIGINT (Ctrl-C) cancels. Everything that must stop cleanly watches it
//! (or a child of it); nothing else listens for signals.

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// A fresh token cancelled by the first SIGTERM or SIGINT. Must be called inside a tokio
/// runtime.
///
/// # Guarantees
/// SIGTERM is caught from the moment this returns (the default action, ending the process at
/// once, no longer applies). The listening task ends with the token, whoever cancels it, so
/// it never outlives the shutdown it serves.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let listener = token.clone();
    tokio::spawn(
        async move {
            tokio::select! {
                () = listener.cancelled() => return,
                () = signalled(
                    #[cfg(unix)]
                    term,
                ) => {}
            }
            tracing::info!("shutdown requested");
            listener.cancel();
        }
        .instrument(tracing::info_span!("task", task = "signal listener")),
    );
    token
}

/// Waits for SIGTERM (when it could be caught) or SIGINT.
async fn signalled(#[cfg(unix)] term: Option<tokio::signal::unix::Signal>) {
    #[cfg(unix)]
    if let Some(mut term) = term {
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
        return;
    }
    // Without a handler, waiting on nothing would miss Ctrl-C; an error here means no signal
    // can be caught at all, and then only cancellation ends the wait.
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sigterm_cancels_the_token() {
        let token = on_signal();
        assert!(!token.is_cancelled());
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).expect("raises SIGTERM");
        tokio::time::timeout(std::time::Duration::from_secs(5), token.cancelled())
            .await
            .expect("SIGTERM did not cancel the token");
    }
}
