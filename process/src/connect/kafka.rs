//! Kafka: the brokers, the security protocol, SASL credentials and TLS files, the librdkafka
//! configuration built from them, and the start-up check.
//!
//! `--kafka-security-protocol` is librdkafka's `security.protocol`: `plaintext`, `ssl`,
//! `sasl_plaintext` or `sasl_ssl`. With SASL, `--kafka-sasl-mechanism` (SCRAM-SHA-512 by
//! default, SCRAM-SHA-256 or PLAIN), `--kafka-username` and the password from
//! `KUBECRAWL_KAFKA_PASSWORD` or `--kafka-password-file`. With TLS, `--kafka-ca-file` verifies
//! the brokers (the system's trust store otherwise) and `--kafka-cert-file` /
//! `--kafka-key-file` authenticate the client (mutual TLS). `--kafka-property` sets any other
//! librdkafka property and wins over all of these.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kubecrawl_api::contract::env;
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use super::secret::{self, Secret};
use super::{Error, Result, read};

/// How to reach Kafka: the brokers, with TLS and authentication.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "kafka-connection")]
pub struct KafkaArgs {
    /// Kafka brokers, `host:port,...`.
    #[arg(long, env = env::KAFKA_BROKERS)]
    pub kafka_brokers: String,
    /// TLS and authentication.
    #[command(flatten)]
    pub security: KafkaSecurity,
}

impl KafkaArgs {
    /// The librdkafka configuration for these flags (see [`KafkaSecurity::client_config`]).
    ///
    /// # Errors
    /// As [`KafkaSecurity::client_config`].
    pub fn client_config(&self) -> Result<ClientConfig> {
        self.security.client_config(&self.kafka_brokers)
    }

    /// Proves the brokers accept these settings (see [`check`]).
    ///
    /// # Errors
    /// As [`check`].
    pub async fn check(&self) -> Result<()> {
        check(
            &self.client_config()?,
            &self.kafka_brokers,
            self.security.kafka_connect_timeout,
        )
        .await
    }
}

/// librdkafka's `security.protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    #[default]
    #[value(name = "plaintext")]
    Plaintext,
    /// TLS (with a client certificate for mutual TLS).
    #[value(name = "ssl")]
    Ssl,
    /// SASL authentication without TLS.
    #[value(name = "sasl_plaintext", alias = "sasl-plaintext")]
    SaslPlaintext,
    /// SASL authentication over TLS.
    #[value(name = "sasl_ssl", alias = "sasl-ssl")]
    SaslSsl,
}

impl SecurityProtocol {
    fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// librdkafka's `sasl.mechanisms` that kubecrawl supports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SaslMechanism {
    /// SCRAM with SHA-512.
    #[default]
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
    /// SCRAM with SHA-256.
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    /// The password in the clear (use only with `sasl_ssl`).
    #[value(name = "PLAIN")]
    Plain,
}

impl SaslMechanism {
    fn name(self) -> &'static str {
        match self {
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::Plain => "PLAIN",
        }
    }
}

/// TLS and authentication for Kafka, shared by every process that connects.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "kafka-security")]
pub struct KafkaSecurity {
    /// How to talk to the brokers: plaintext, ssl, sasl_plaintext or sasl_ssl.
    #[arg(
        long,
        env = env::KAFKA_SECURITY_PROTOCOL,
        value_enum,
        ignore_case = true,
        default_value = "plaintext"
    )]
    pub kafka_security_protocol: SecurityProtocol,
    /// The SASL mechanism, with sasl_plaintext or sasl_ssl: SCRAM-SHA-512, SCRAM-SHA-256 or
    /// PLAIN.
    #[arg(
        long,
        env = env::KAFKA_SASL_MECHANISM,
        value_enum,
        ignore_case = true,
        default_value = "SCRAM-SHA-512"
    )]
    pub kafka_sasl_mechanism: SaslMechanism,
    /// The SASL user.
    #[arg(long, env = env::KAFKA_USERNAME)]
    pub kafka_username: Option<String>,
    /// The SASL password (wins over --kafka-password-file). Prefer the environment variable
    /// or the file: a flag's value is visible to every local user.
    #[arg(long, env = "KUBECRAWL_KAFKA_PASSWORD", hide_env_values = true)]
    pub kafka_password: Option<Secret>,
    /// A file holding the SASL password (a mounted Secret); one trailing newline is ignored.
    #[arg(long, env = env::KAFKA_PASSWORD_FILE)]
    pub kafka_password_file: Option<PathBuf>,
    /// A PEM file of the CAs that sign the brokers' certificates (ssl, sasl_ssl); without it
    /// the system's trust store is used.
    #[arg(long, env = env::KAFKA_CA_FILE)]
    pub kafka_ca_file: Option<PathBuf>,
    /// A PEM client certificate presented to the brokers (mutual TLS); needs
    /// --kafka-key-file.
    #[arg(long, env = env::KAFKA_CERT_FILE, requires = "kafka_key_file")]
    pub kafka_cert_file: Option<PathBuf>,
    /// The PEM private key of --kafka-cert-file.
    #[arg(long, env = env::KAFKA_KEY_FILE, requires = "kafka_cert_file")]
    pub kafka_key_file: Option<PathBuf>,
    /// Any other librdkafka property, `key=value`; wins over the settings above; repeatable.
    #[arg(long = "kafka-property", env = env::KAFKA_PROPERTIES, value_delimiter = ',', value_parser = parse_property)]
    pub kafka_properties: Vec<(String, String)>,
    /// How long reaching the brokers at start-up may take before the process gives up.
    #[arg(long, env = "KUBECRAWL_KAFKA_CONNECT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub kafka_connect_timeout: Duration,
}

/// No TLS files, no credentials, the default connect timeout (as with no flags at all).
impl Default for KafkaSecurity {
    fn default() -> Self {
        Self {
            kafka_security_protocol: Default::default(),
            kafka_sasl_mechanism: Default::default(),
            kafka_username: Default::default(),
            kafka_password: Default::default(),
            kafka_password_file: Default::default(),
            kafka_ca_file: Default::default(),
            kafka_cert_file: Default::default(),
            kafka_key_file: Default::default(),
            kafka_properties: Default::default(),
            kafka_connect_timeout: super::DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

impl KafkaSecurity {
    /// The librdkafka configuration for `brokers` with these settings. Files are read once
    /// here, so that a missing one is named at start-up rather than by librdkafka later.
    ///
    /// # Errors
    /// [`Error::ReadFile`] for a file that cannot be read; [`Error::KafkaSettings`] for SASL
    /// without a user or password, or TLS files without a TLS protocol.
    pub fn client_config(&self, brokers: &str) -> Result<ClientConfig> {
        let protocol = self.kafka_security_protocol;
        let settings = |problem: &'static str| Error::KafkaSettings {
            brokers: brokers.to_owned(),
            problem,
        };
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("security.protocol", protocol.name());
        if protocol.sasl() {
            let user = self
                .kafka_username
                .as_deref()
                .ok_or_else(|| settings("SASL needs --kafka-username"))?;
            let password = secret::resolve(
                "the kafka password",
                self.kafka_password.as_ref(),
                self.kafka_password_file.as_deref(),
            )?
            .ok_or_else(|| {
                settings("SASL needs KUBECRAWL_KAFKA_PASSWORD or --kafka-password-file")
            })?;
            config
                .set("sasl.mechanisms", self.kafka_sasl_mechanism.name())
                .set("sasl.username", user)
                .set("sasl.password", password.expose());
        }
        let files = [
            ("ssl.ca.location", "the kafka CA", &self.kafka_ca_file),
            (
                "ssl.certificate.location",
                "the kafka client certificate",
                &self.kafka_cert_file,
            ),
            (
                "ssl.key.location",
                "the kafka client key",
                &self.kafka_key_file,
            ),
        ];
        for (property, what, file) in files {
            let Some(path) = file else { continue };
            if !protocol.tls() {
                return Err(settings(
                    "TLS files need --kafka-security-protocol ssl or sasl_ssl",
                ));
            }
            read(what, path)?;
            config.set(property, path.display().to_string());
        }
        for (k, v) in &self.kafka_properties {
            config.set(k, v);
        }
        Ok(config)
    }
}

fn parse_property(s: &str) -> std::result::Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not key=value"))?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

/// How long one metadata request of the start-up check may wait.
const PROBE_STEP: Duration = Duration::from_millis(500);

/// Proves that the brokers accept `config`: asks for the cluster's metadata until it comes,
/// for at most `timeout`. An authentication or TLS failure, or a plaintext client on a TLS
/// listener, ends the check at once; other failures (a broker not up yet) are tried again
/// until the timeout. Runs on a blocking thread, since librdkafka's calls block.
///
/// # Errors
/// [`Error::KafkaConfig`] for properties librdkafka refuses, [`Error::KafkaConnect`] with
/// librdkafka's account of the failure.
pub async fn check(config: &ClientConfig, brokers: &str, timeout: Duration) -> Result<()> {
    let (config, brokers) = (config.clone(), brokers.to_owned());
    let interrupted = Error::KafkaCheck {
        brokers: brokers.clone(),
    };
    tokio::task::spawn_blocking(move || check_blocking(&config, &brokers, timeout))
        .await
        .map_err(|_| interrupted)?
}

fn check_blocking(config: &ClientConfig, brokers: &str, timeout: Duration) -> Result<()> {
    let mut config = config.clone();
    // Connection failures are logged at Info level; the probe must see them whatever the
    // process's own log filter.
    config.set_log_level(RDKafkaLogLevel::Info);
    let producer: BaseProducer<Probe> = config
        .create_with_context(Probe {
            tls: config
                .get("security.protocol")
                .is_some_and(|p| p.to_ascii_lowercase().ends_with("ssl")),
            ..Probe::default()
        })
        .map_err(|source| Error::KafkaConfig {
            brokers: brokers.to_owned(),
            source,
        })?;
    let deadline = Instant::now() + timeout;
    loop {
        let step = deadline
            .saturating_duration_since(Instant::now())
            .min(PROBE_STEP);
        let attempt = producer.client().fetch_metadata(None, step);
        // Serves the error callback, which carries librdkafka's reasons.
        producer.poll(Duration::ZERO);
        match attempt {
            Ok(metadata) if !metadata.brokers().is_empty() => return Ok(()),
            Ok(_) => {}
            Err(e) => producer.context().note(format!("metadata request: {e}")),
        }
        if let Some(cause) = producer.context().fatal() {
            return Err(Error::KafkaConnect {
                brokers: brokers.to_owned(),
                cause,
            });
        }
        if Instant::now() >= deadline {
            let cause = producer.context().last().map_or_else(
                || format!("no broker answered within {timeout:?}"),
                |last| format!("no broker answered within {timeout:?}; last error: {last}"),
            );
            return Err(Error::KafkaConnect {
                brokers: brokers.to_owned(),
                cause,
            });
        }
    }
}

/// The start-up check's client context: remembers what librdkafka reported.
#[derive(Default)]
struct Probe {
    /// Whether the client speaks TLS.
    tls: bool,
    fatal: Mutex<Option<String>>,
    last: Mutex<Option<String>>,
}

impl Probe {
    fn fatal(&self) -> Option<String> {
        self.fatal.lock().ok().and_then(|f| f.clone())
    }

    fn last(&self) -> Option<String> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    fn note(&self, what: String) {
        if let Ok(mut last) = self.last.lock()
            && last.is_none()
        {
            *last = Some(what);
        }
    }
}

impl Probe {
    fn record(&self, fatal: bool, reason: &str) {
        let slot = if fatal { &self.fatal } else { &self.last };
        if let Ok(mut slot) = slot.lock() {
            *slot = Some(reason.to_owned());
        }
    }
}

/// Whether librdkafka's account of a failure is one that trying again cannot fix: TLS
/// (a certificate not trusted, a client certificate refused), SASL, or a plaintext client on
/// a TLS listener. librdkafka reports some of these only as log lines, so the text decides.
fn is_fatal(reason: &str) -> bool {
    [
        "SSL handshake failed",
        "SSL routines",
        "SASL authentication error",
        "Authentication failed",
        "incorrect security.protocol",
    ]
    .iter()
    .any(|needle| reason.contains(needle))
}

impl ClientContext for Probe {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(?level, facility = fac, message, "kafka start-up check");
        if fac == "FAIL" {
            // A TLS listener closes a plaintext client's connection before its first answer.
            if !self.tls && message.contains("in state APIVERSION_QUERY") {
                let hint = format!(
                    "{message}; the broker closed the connection before answering: if this is \
                     a TLS listener, set --kafka-security-protocol ssl or sasl_ssl"
                );
                self.record(true, &hint);
            } else {
                self.record(is_fatal(message), message);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(error = %error, reason, "kafka start-up check");
        let fatal = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)
        ) || is_fatal(reason);
        // "1/1 brokers are down" says less than the log line that came before it.
        let known = self.last.lock().map(|l| l.is_some()).unwrap_or(false);
        if fatal || !known {
            self.record(fatal, reason);
        }
    }
}

impl ProducerContext for Probe {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, (): Self::DeliveryOpaque) {}
}

/// Whether Kafka refused a message for good: sending it again unchanged cannot succeed (too
/// large, invalid, a topic that may not be written or does not exist). A broker that is down,
/// slow or moving leadership is not a refusal: the same message may go through later.
pub fn is_permanent_refusal(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::MessageSizeTooLarge
                | Code::InvalidMessageSize
                | Code::MessageBatchTooLarge
                | Code::InvalidMessage
                | Code::InvalidRecord
                | Code::InvalidTopic
                | Code::UnknownTopic
                | Code::TopicAuthorizationFailed
                | Code::ClusterAuthorizationFailed
                | Code::PolicyViolation
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_for_good_are_told_from_outages() {
        use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};
        let refused = |code| is_permanent_refusal(&KafkaError::MessageProduction(code));
        assert!(refused(Code::MessageSizeTooLarge));
        assert!(refused(Code::TopicAuthorizationFailed));
        assert!(!refused(Code::MessageTimedOut));
        assert!(!refused(Code::BrokerTransportFailure));
        assert!(!refused(Code::NotLeaderForPartition));
    }

    fn get(config: &ClientConfig, key: &str) -> Option<String> {
        config.get(key).map(str::to_owned)
    }

    #[test]
    fn sasl_ssl_sets_librdkafkas_properties() {
        let security = KafkaSecurity {
            kafka_security_protocol: SecurityProtocol::SaslSsl,
            kafka_sasl_mechanism: SaslMechanism::ScramSha256,
            kafka_username: Some("crawler".into()),
            kafka_password: Some("pw".parse().expect("infallible")),
            kafka_properties: vec![("client.id".into(), "x".into())],
            ..KafkaSecurity::default()
        };
        let config = security.client_config("b:9093").expect("valid");
        assert_eq!(
            get(&config, "security.protocol").as_deref(),
            Some("sasl_ssl")
        );
        assert_eq!(
            get(&config, "sasl.mechanisms").as_deref(),
            Some("SCRAM-SHA-256")
        );
        assert_eq!(get(&config, "sasl.username").as_deref(), Some("crawler"));
        assert_eq!(get(&config, "sasl.password").as_deref(), Some("pw"));
        assert_eq!(get(&config, "client.id").as_deref(), Some("x"));
        assert!(!format!("{security:?}").contains("\"pw\""));
    }

    #[test]
    fn sasl_without_credentials_or_tls_files_without_tls_are_refused() {
        let sasl = KafkaSecurity {
            kafka_security_protocol: SecurityProtocol::SaslSsl,
            kafka_username: Some("crawler".into()),
            ..KafkaSecurity::default()
        };
        assert!(matches!(
            sasl.client_config("b:9093"),
            Err(Error::KafkaSettings { .. })
        ));
        let plain_with_ca = KafkaSecurity {
            kafka_ca_file: Some("/etc/hostname".into()),
            ..KafkaSecurity::default()
        };
        assert!(matches!(
            plain_with_ca.client_config("b:9092"),
            Err(Error::KafkaSettings { .. })
        ));
    }

    #[test]
    fn properties_are_key_equals_value() {
        assert_eq!(
            parse_property("security.protocol=SSL").expect("ok"),
            ("security.protocol".to_owned(), "SSL".to_owned())
        );
        assert!(parse_property("nope").is_err());
    }
}
