//! Logging: the `--log` and `--log-format` flags every binary flattens, and the `tracing`
//! subscriber they describe. Logs go to stderr (stdout is for a command's results).

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::{Error, Result};

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// Logging flags. Global, so they may follow a subcommand. A binary whose default filter is
/// not `info` changes it with `#[command(mut_arg("log", |a| a.default_value("warn")))]`.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(
        long,
        env = "KUBECRAWL_LOG_FORMAT",
        value_enum,
        default_value = "plain",
        global = true
    )]
    pub log_format: LogFormat,
    /// Log filter in `tracing` syntax, e.g. `info` or `debug,kube=info`.
    #[arg(long, env = "KUBECRAWL_LOG", default_value = "info", global = true)]
    pub log: String,
}

/// Starts logging to stderr as `args` say. Colours only on a terminal. Once per process: a
/// second call leaves the first subscriber in place.
///
/// # Errors
/// [`Error::LogFilter`] when `--log` does not parse: bad configuration ends the process at
/// start-up.
pub fn init(args: &LogArgs) -> Result<()> {
    let filter = EnvFilter::try_new(&args.log).map_err(|source| Error::LogFilter { source })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // Err only when a subscriber is already set (a test, or a second call): keep that one.
    let _ = match args.log_format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    #[command(name = "quiet", mut_arg("log", |a| a.default_value("warn")))]
    struct Quiet {
        #[command(flatten)]
        log: LogArgs,
    }

    #[derive(Debug, Parser)]
    #[command(name = "plain")]
    struct Plain {
        #[command(flatten)]
        log: LogArgs,
    }

    #[test]
    fn a_binary_may_change_the_default_filter() {
        use clap::CommandFactory;
        Quiet::command().debug_assert();
        Plain::command().debug_assert();
        let quiet = Quiet::try_parse_from(["quiet"]).expect("parses");
        assert_eq!(quiet.log.log, "warn");
        let plain = Plain::try_parse_from(["plain", "--log-format", "json"]).expect("parses");
        assert_eq!(plain.log.log, "info");
        assert_eq!(plain.log.log_format, LogFormat::Json);
    }

    #[test]
    fn a_filter_that_does_not_parse_is_an_error() {
        let args = LogArgs {
            log_format: LogFormat::Plain,
            log: "info,=[".to_owned(),
        };
        assert!(matches!(init(&args), Err(Error::LogFilter { .. })));
    }
}
