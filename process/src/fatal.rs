//! How a process that cannot go on says why: one line on stderr, `kubecrawl: ` and the error
//! chain ([`crate::format_chain`]), then a non-zero exit. Every kubecrawl binary ends this
//! way, whatever failed (a flag, a connection, a critical task).

use std::process::ExitCode;

/// What every fatal error line starts with.
pub const PREFIX: &str = "kubecrawl: ";

/// The line [`report`] prints for `err` (without the newline).
pub fn line(err: &(dyn std::error::Error + 'static)) -> String {
    format!("{PREFIX}{}", crate::format_chain(err))
}

/// Prints `err` as one line on stderr and returns the failing exit code.
pub fn report(err: &(dyn std::error::Error + 'static)) -> ExitCode {
    eprintln!("{}", line(err));
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fatal_line_is_the_prefix_and_the_chain() {
        let err = crate::Error::Runtime {
            source: std::io::Error::other("no threads"),
        };
        assert_eq!(
            line(&err),
            "kubecrawl: starting the async runtime failed: no threads"
        );
    }
}
