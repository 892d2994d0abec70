//! fake-worker: a stand-in container process for the fake kubelet's own tests.
//!
//! It prints one line `fake-worker args <JSON array>` and one line `fake-worker env <JSON
//! object>` (its whole environment) to stdout, then runs until SIGTERM or SIGINT and exits 0
//! after printing `fake-worker stopping on <signal>`. With `FAKE_WORKER_IGNORE_TERM=1` it
//! prints `fake-worker ignoring sigterm` and keeps running, so only SIGKILL ends it.

use std::collections::BTreeMap;
use std::io::Write;

use tokio::signal::unix::{SignalKind, signal};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let ignore_term = env.get("FAKE_WORKER_IGNORE_TERM").is_some_and(|v| v == "1");
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "fake-worker args {}", serde_json::to_string(&args)?)?;
        writeln!(out, "fake-worker env {}", serde_json::to_string(&env)?)?;
        out.flush()?;
    }
    let name = loop {
        tokio::select! {
            _ = terminate.recv() => {
                if ignore_term {
                    println!("fake-worker ignoring sigterm");
                    continue;
                }
                break "sigterm";
            }
            _ = interrupt.recv() => break "sigint",
        }
    };
    println!("fake-worker stopping on {name}");
    Ok(())
}
