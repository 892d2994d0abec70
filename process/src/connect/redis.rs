//! Redis: the URL, TLS and authentication flags, a client built from them, and the start-up
//! check.
//!
//! TLS is chosen by the URL's scheme (`rediss://`). The server's certificate is verified
//! against `--redis-ca-file` when given, else against the system's trust store; a client
//! certificate and key (`--redis-cert-file`, `--redis-key-file`) are presented when the server
//! asks for them (mutual TLS). An ACL user and password may be in the URL or, better, in
//! `--redis-username` and `KUBECRAWL_REDIS_PASSWORD` / `--redis-password-file` (a mounted
//! Secret), which win over the URL's.

use std::path::PathBuf;
use std::time::Duration;

use kubecrawl_api::contract::env;
use kubecrawl_frontier::Servers;
use redis::{ConnectionAddr, IntoConnectionInfo};

use super::secret::{self, Secret};
use super::{Error, Result, read};

/// How to reach the Redis frontier: its URL and key prefix, with TLS and authentication.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "redis-connection")]
pub struct RedisArgs {
    /// The Redis frontier, `redis://[user[:password]@]host:port[/db]`, or `rediss://…` for
    /// TLS. Several URLs, comma-separated, are the frontier's shards (every process must list
    /// the same servers in the same order), or with --redis-cluster the nodes of a Redis
    /// Cluster.
    #[arg(long, env = env::REDIS_URL)]
    pub redis_url: String,
    /// The Redis key prefix shared by the operator and the workers.
    #[arg(long, env = env::REDIS_PREFIX, default_value = "kubecrawl")]
    pub redis_prefix: String,
    /// The --redis-url URLs are nodes of a Redis Cluster; the frontier spreads each spider
    /// over shards on its primaries.
    #[arg(long, env = env::REDIS_CLUSTER)]
    pub redis_cluster: bool,
    /// With --redis-cluster: the number of shards. Default: as many as the frontier was first
    /// used with, else as the cluster has primaries.
    #[arg(long, env = env::REDIS_SHARDS, requires = "redis_cluster", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub redis_shards: Option<u16>,
    /// TLS and authentication.
    #[command(flatten)]
    pub security: RedisSecurity,
}

impl RedisArgs {
    /// A client of the first URL that has answered a PING (see [`RedisSecurity::client`]):
    /// what a probe of Redis needs.
    ///
    /// # Errors
    /// As [`RedisSecurity::client`].
    pub async fn client(&self) -> Result<redis::Client> {
        let urls = split_urls(&self.redis_url);
        self.security
            .client(urls.first().copied().unwrap_or(&self.redis_url))
            .await
    }

    /// The frontier's servers, each of which has answered a PING (see
    /// [`RedisSecurity::servers`]).
    ///
    /// # Errors
    /// As [`RedisSecurity::servers`].
    pub async fn servers(&self) -> Result<Servers> {
        self.security
            .servers(
                &self.redis_url,
                self.redis_cluster,
                self.redis_shards.map(usize::from),
            )
            .await
    }
}

/// Comma-separated URLs, trimmed, empty ones left out.
fn split_urls(urls: &str) -> Vec<&str> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

/// TLS and authentication for Redis, shared by every process that connects.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "redis-security")]
pub struct RedisSecurity {
    /// A PEM file of the CAs that sign the Redis server's certificate (`rediss://` only);
    /// without it the system's trust store is used.
    #[arg(long, env = env::REDIS_CA_FILE)]
    pub redis_ca_file: Option<PathBuf>,
    /// A PEM client certificate presented to Redis (mutual TLS); needs --redis-key-file.
    #[arg(long, env = env::REDIS_CERT_FILE, requires = "redis_key_file")]
    pub redis_cert_file: Option<PathBuf>,
    /// The PEM private key of --redis-cert-file.
    #[arg(long, env = env::REDIS_KEY_FILE, requires = "redis_cert_file")]
    pub redis_key_file: Option<PathBuf>,
    /// The Redis ACL user (wins over the URL's).
    #[arg(long, env = env::REDIS_USERNAME)]
    pub redis_username: Option<String>,
    /// The Redis password (wins over the URL's and --redis-password-file). Prefer the
    /// environment variable or the file: a flag's value is visible to every local user.
    #[arg(long, env = "KUBECRAWL_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<Secret>,
    /// A file holding the Redis password (a mounted Secret); one trailing newline is ignored.
    #[arg(long, env = env::REDIS_PASSWORD_FILE)]
    pub redis_password_file: Option<PathBuf>,
    /// How long connecting to Redis at start-up may take before the process gives up.
    #[arg(long, env = "KUBECRAWL_REDIS_CONNECT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub redis_connect_timeout: Duration,
}

/// No TLS files, no credentials, the default connect timeout (as with no flags at all).
impl Default for RedisSecurity {
    fn default() -> Self {
        Self {
            redis_ca_file: Default::default(),
            redis_cert_file: Default::default(),
            redis_key_file: Default::default(),
            redis_username: Default::default(),
            redis_password: Default::default(),
            redis_password_file: Default::default(),
            redis_connect_timeout: super::DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

impl RedisSecurity {
    /// Builds the client for `url` with these settings (reading the files they name) and
    /// proves it works: it connects, completes TLS and authentication, and gets an answer to
    /// PING within `--redis-connect-timeout`.
    ///
    /// # Errors
    /// [`Error::ReadFile`], [`Error::RedisConfig`], [`Error::RedisConnect`] or
    /// [`Error::RedisTimeout`], each naming the endpoint (never the password).
    pub async fn client(&self, url: &str) -> Result<redis::Client> {
        let client = self.build(url)?;
        check(&client, self.redis_connect_timeout).await?;
        Ok(client)
    }

    /// The servers of a frontier: the comma-separated `urls` as independent shards, or as the
    /// nodes of a Redis Cluster (`cluster`, with `shards` shards). Each server answers a PING
    /// within `--redis-connect-timeout` before this returns.
    ///
    /// # Errors
    /// As [`RedisSecurity::client`], for the first URL that fails; [`Error::RedisConfig`]
    /// when `urls` lists none.
    pub async fn servers(
        &self,
        urls: &str,
        cluster: bool,
        shards: Option<usize>,
    ) -> Result<Servers> {
        let list = split_urls(urls);
        if list.is_empty() {
            return Err(Error::RedisConfig {
                endpoint: String::new(),
                source: redis::RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "no redis url given",
                )),
            });
        }
        let mut clients = Vec::with_capacity(list.len());
        for url in &list {
            clients.push(self.client(url).await?);
        }
        if !cluster {
            return Ok(Servers::List(clients));
        }
        let infos: Vec<redis::ConnectionInfo> = clients
            .iter()
            .map(|c| c.get_connection_info().clone())
            .collect();
        let config_error = |source| Error::RedisConfig {
            endpoint: redact(list[0]),
            source,
        };
        let mut builder = redis::cluster::ClusterClientBuilder::new(infos.clone())
            .connection_timeout(self.redis_connect_timeout);
        let settings = infos[0].redis_settings();
        if let Some(user) = settings.username() {
            builder = builder.username(user);
        }
        if let Some(password) = settings.password() {
            builder = builder.password(password);
        }
        if matches!(infos[0].addr(), ConnectionAddr::TcpTls { .. }) {
            builder = builder.tls(redis::cluster::TlsMode::Secure);
            if let Some(certificates) = self.certificates()? {
                builder = builder.certs(certificates);
            }
        }
        let client = builder.build().map_err(config_error)?;
        Ok(Servers::Cluster {
            client: Box::new(client),
            shards,
        })
    }

    /// Builds the client for `url` without connecting.
    ///
    /// # Errors
    /// [`Error::ReadFile`] for a file that cannot be read, [`Error::RedisConfig`] for a URL
    /// or TLS material the client refuses, or TLS files with a `redis://` URL.
    pub fn build(&self, url: &str) -> Result<redis::Client> {
        install_crypto_provider();
        let config_error = |source| Error::RedisConfig {
            endpoint: redact(url),
            source,
        };
        let mut info = url.into_connection_info().map_err(config_error)?;
        let endpoint = endpoint(info.addr());
        let mut settings = info.redis_settings().clone();
        if let Some(user) = &self.redis_username {
            settings = settings.set_username(user);
        }
        let password = secret::resolve(
            "the redis password",
            self.redis_password.as_ref(),
            self.redis_password_file.as_deref(),
        )?;
        if let Some(password) = password {
            settings = settings.set_password(password.expose());
        }
        info = info.set_redis_settings(settings);
        let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
        let files = self.redis_ca_file.is_some() || self.redis_cert_file.is_some();
        let config_error = |source| Error::RedisConfig {
            endpoint: endpoint.clone(),
            source,
        };
        if !files {
            return redis::Client::open(info).map_err(config_error);
        }
        if !tls {
            return Err(config_error(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "a CA or client certificate file needs a rediss:// URL",
            ))));
        }
        let certificates = self.certificates()?.unwrap_or(redis::TlsCertificates {
            client_tls: None,
            root_cert: None,
        });
        redis::Client::build_with_tls(info, certificates).map_err(config_error)
    }

    /// The CA and client certificate files, read; `None` when no file is named.
    fn certificates(&self) -> Result<Option<redis::TlsCertificates>> {
        if self.redis_ca_file.is_none() && self.redis_cert_file.is_none() {
            return Ok(None);
        }
        let root_cert = self
            .redis_ca_file
            .as_deref()
            .map(|path| read("the redis CA", path))
            .transpose()?;
        let client_tls = match (&self.redis_cert_file, &self.redis_key_file) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read("the redis client certificate", cert)?,
                client_key: read("the redis client key", key)?,
            }),
            _ => None,
        };
        Ok(Some(redis::TlsCertificates {
            client_tls,
            root_cert,
        }))
    }
}

/// Connects with `client` and sends PING, all within `timeout`. A refused connection is tried
/// again until the timeout; any other failure (TLS, authentication, a closed connection) ends
/// the check at once.
///
/// # Errors
/// [`Error::RedisConnect`] with the client's error as the cause, or [`Error::RedisTimeout`].
pub async fn check(client: &redis::Client, timeout: Duration) -> Result<()> {
    let info = client.get_connection_info();
    let endpoint = endpoint(info.addr());
    let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
    // A plaintext client on a TLS port sees the connection closed or no answer at all.
    let hint = if tls {
        ""
    } else {
        " (if this is a TLS port, use a rediss:// URL)"
    };
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let attempt = async {
        loop {
            let result = async {
                let mut conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                redis::cmd("PING").query_async::<String>(&mut conn).await
            }
            .await;
            match result {
                Err(e) if e.is_connection_refusal() => {
                    tracing::debug!(endpoint = %endpoint, "redis refused the connection, trying again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                other => return other,
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(Error::RedisConnect {
            endpoint,
            hint: if source.is_timeout() || source.is_connection_dropped() || source.is_io_error() {
                hint
            } else {
                ""
            },
            source,
        }),
        Err(_) => Err(Error::RedisTimeout {
            endpoint,
            after: timeout,
            hint,
        }),
    }
}

/// `redis://host:port` or `rediss://host:port` of a connection address, without credentials.
fn endpoint(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(host, port) => format!("redis://{host}:{port}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("rediss://{host}:{port}"),
        ConnectionAddr::Unix(path) => format!("unix://{}", path.display()),
        other => format!("{other:?}"),
    }
}

/// A URL without its user information, for an error about a URL that did not parse.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, rest))) => format!("{scheme}://{rest}"),
        _ => url.to_owned(),
    }
}

/// rustls needs one process-wide crypto provider; kubecrawl compiles only ring. Installing it
/// twice is harmless (the second call reports the first and changes nothing).
fn install_crypto_provider() {
    let _already = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_appear_in_endpoints() {
        assert_eq!(redact("rediss://u:pw@h:1/0"), "rediss://h:1/0");
        let client = RedisSecurity::default()
            .build("redis://user:secret@127.0.0.1:6390/2")
            .expect("a valid url");
        let shown = endpoint(client.get_connection_info().addr());
        assert_eq!(shown, "redis://127.0.0.1:6390");
    }

    #[test]
    fn flags_win_over_the_url() {
        let security = RedisSecurity {
            redis_username: Some("crawler".into()),
            redis_password: Some("from-env".parse().expect("infallible")),
            ..RedisSecurity::default()
        };
        let client = security
            .build("redis://u:p@127.0.0.1:6390")
            .expect("a valid url");
        let settings = client.get_connection_info().redis_settings();
        assert_eq!(settings.username(), Some("crawler"));
        assert_eq!(settings.password(), Some("from-env"));
    }

    #[test]
    fn no_flags_is_the_default() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            redis: RedisSecurity,
            #[command(flatten)]
            kafka: crate::connect::kafka::KafkaSecurity,
        }
        let cli = Cli::try_parse_from(["x"]).expect("no flags parse");
        assert_eq!(
            cli.redis.redis_connect_timeout,
            RedisSecurity::default().redis_connect_timeout
        );
        assert_eq!(
            cli.kafka.kafka_connect_timeout,
            crate::connect::kafka::KafkaSecurity::default().kafka_connect_timeout
        );
    }

    #[test]
    fn tls_files_need_a_tls_url() {
        let security = RedisSecurity {
            redis_ca_file: Some("/nonexistent/ca.pem".into()),
            ..RedisSecurity::default()
        };
        assert!(matches!(
            security.build("redis://127.0.0.1:6390"),
            Err(Error::RedisConfig { .. })
        ));
        assert!(matches!(
            security.build("rediss://127.0.0.1:6390"),
            Err(Error::ReadFile { .. })
        ));
    }
}
