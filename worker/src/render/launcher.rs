//! Starting the browser so that it dies with the worker.
//!
//! The browser is not started directly: the worker starts its own executable (a binary whose
//! `main` is [`crate::main`]; [`super::RenderConfig::launcher`]) with
//! [`BROWSER_ENV`] naming the browser, and [`exec_if_launcher`], the first thing every worker
//! binary's `main` does, sees it, asks the kernel to kill the process when the worker dies
//! (`PR_SET_PDEATHSIG`), and replaces itself with the browser. The browser's own children
//! (renderers) end with it. So a worker killed with SIGKILL, which runs no cleanup, still
//! leaves no browser behind; the image needs no shell or helper program for it.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;

/// Names the browser the launcher becomes.
pub const BROWSER_ENV: &str = "KUBECRAWL_BROWSER_EXEC";
/// The worker's process id: a launcher whose parent is already another process exits.
const PARENT_ENV: &str = "KUBECRAWL_BROWSER_PARENT";

/// Set once this process's `main` checked whether it is a launcher: only then can this
/// executable serve as one ([`launcher`]).
static CAN_LAUNCH: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// This executable, when it can start the browser ([`crate::main`] runs
/// [`exec_if_launcher`] first); `None` in a program that does not (a test binary, a library
/// user), which then starts the browser directly.
pub fn launcher() -> Option<std::path::PathBuf> {
    if CAN_LAUNCH.load(std::sync::atomic::Ordering::Relaxed) {
        std::env::current_exe().ok()
    } else {
        None
    }
}

/// The environment that makes a launcher (a worker binary) become `browser`.
pub fn env(browser: &Path) -> Vec<(String, String)> {
    vec![
        (BROWSER_ENV.to_owned(), browser.display().to_string()),
        (PARENT_ENV.to_owned(), std::process::id().to_string()),
    ]
}

/// When this process was started as a browser's launcher, becomes the browser (never
/// returns); otherwise does nothing.
pub fn exec_if_launcher() {
    let Some(browser) = std::env::var_os(BROWSER_ENV) else {
        CAN_LAUNCH.store(true, std::sync::atomic::Ordering::Relaxed);
        return;
    };
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        eprintln!("kubecrawl browser launcher: PR_SET_PDEATHSIG failed: {e}");
        std::process::exit(126);
    }
    // The worker may have died before the signal was asked for.
    let parent = std::env::var(PARENT_ENV)
        .ok()
        .and_then(|p| p.parse::<i32>().ok());
    if parent.is_some_and(|p| nix::unistd::getppid().as_raw() != p) {
        std::process::exit(125);
    }
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let error = std::process::Command::new(&browser)
        .args(args)
        .env_remove(BROWSER_ENV)
        .env_remove(PARENT_ENV)
        .exec();
    eprintln!(
        "kubecrawl browser launcher: cannot start {}: {error}",
        Path::new(&browser).display()
    );
    std::process::exit(127);
}
