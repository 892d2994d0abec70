//! Every supported way in, against the TLS Redis and the SASL_SSL / mTLS Kafka of
//! `make env-up`: the settings a user gives are accepted by the real servers. (The wrong
//! ones are refused at start-up: see `tests/src/startup.rs` and the binaries' `startup`
//! tests.)

use std::path::PathBuf;

use kubecrawl_process::connect::kafka::{
    KafkaArgs, KafkaSecurity, SaslMechanism, SecurityProtocol,
};
use kubecrawl_process::connect::redis::RedisSecurity;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the TLS services of `make env-up` \
             (run them with `make test`, or `make env-up` and `. .testenv/env`)"
        )
    })
}

fn path(name: &str) -> Option<PathBuf> {
    Some(PathBuf::from(var(name)))
}

#[tokio::test]
async fn redis_over_tls_with_a_password_file_and_with_a_client_certificate() {
    let url = var("REDIS_TLS_URL");
    let password = RedisSecurity {
        redis_ca_file: path("TLS_CA_FILE"),
        redis_username: Some(var("REDIS_TLS_USERNAME")),
        redis_password_file: path("REDIS_TLS_PASSWORD_FILE"),
        ..RedisSecurity::default()
    };
    password
        .client(&url)
        .await
        .expect("a CA, an ACL user and a password file");
    let mtls = RedisSecurity {
        redis_cert_file: path("TLS_CLIENT_CERT_FILE"),
        redis_key_file: path("TLS_CLIENT_KEY_FILE"),
        ..password.clone()
    };
    mtls.client(&url).await.expect("and a client certificate");
    // The URL may carry the user and password instead of the flags.
    let secret = std::fs::read_to_string(var("REDIS_TLS_PASSWORD_FILE")).expect("password");
    let in_url = url.replacen(
        "rediss://",
        &format!("rediss://{}:{}@", var("REDIS_TLS_USERNAME"), secret.trim()),
        1,
    );
    RedisSecurity {
        redis_ca_file: path("TLS_CA_FILE"),
        ..RedisSecurity::default()
    }
    .client(&in_url)
    .await
    .expect("credentials in the URL");
}

#[tokio::test]
async fn kafka_over_sasl_ssl_with_each_mechanism_and_over_mutual_tls() {
    for mechanism in [
        SaslMechanism::ScramSha512,
        SaslMechanism::ScramSha256,
        SaslMechanism::Plain,
    ] {
        let args = KafkaArgs {
            kafka_brokers: var("KAFKA_SASL_BROKERS"),
            security: KafkaSecurity {
                kafka_security_protocol: SecurityProtocol::SaslSsl,
                kafka_sasl_mechanism: mechanism,
                kafka_username: Some(var("KAFKA_SASL_USERNAME")),
                kafka_password_file: path("KAFKA_SASL_PASSWORD_FILE"),
                kafka_ca_file: path("TLS_CA_FILE"),
                ..KafkaSecurity::default()
            },
        };
        args.check()
            .await
            .unwrap_or_else(|e| panic!("{mechanism:?}: {e}"));
    }
    let mtls = KafkaArgs {
        kafka_brokers: var("KAFKA_MTLS_BROKERS"),
        security: KafkaSecurity {
            kafka_security_protocol: SecurityProtocol::Ssl,
            kafka_ca_file: path("TLS_CA_FILE"),
            kafka_cert_file: path("TLS_CLIENT_CERT_FILE"),
            kafka_key_file: path("TLS_CLIENT_KEY_FILE"),
            ..KafkaSecurity::default()
        },
    };
    mtls.check().await.expect("a client certificate");
    let without_certificate = KafkaArgs {
        security: KafkaSecurity {
            kafka_cert_file: None,
            kafka_key_file: None,
            ..mtls.security.clone()
        },
        ..mtls.clone()
    };
    let refused = without_certificate
        .check()
        .await
        .expect_err("the mTLS listener requires a client certificate");
    assert!(
        refused.to_string().contains(&var("KAFKA_MTLS_BROKERS")),
        "{refused}"
    );
}
