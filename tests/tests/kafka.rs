//! A produce/consume round trip through the real Kafka broker of `make env-up`, with rdkafka.

use std::collections::BTreeSet;
use std::time::Duration;

use kubecrawl_e2e::TestEnv;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

const RECORDS: usize = 1000;

#[tokio::test]
async fn kafka_produce_consume_round_trip() {
    let env = TestEnv::get();
    let topic = format!("kc-e2e-roundtrip-{}", std::process::id());

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &env.kafka_brokers)
        .create()
        .expect("admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create topics request");
    for result in created {
        result.expect("topic created");
    }

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &env.kafka_brokers)
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    // send_result queues each record at once; the delivery futures are awaited afterwards, so
    // the producer batches instead of waiting for one acknowledgement per record.
    let deliveries: Vec<_> = (0..RECORDS)
        .map(|i| {
            let key = format!("k{i}");
            let payload = format!("{{\"n\":{i}}}");
            producer
                .send_result(FutureRecord::to(&topic).key(&key).payload(&payload))
                .map_err(|(e, _)| e)
                .expect("the producer queue accepts the record")
        })
        .collect();
    for delivery in deliveries {
        let result = tokio::time::timeout(Duration::from_secs(60), delivery)
            .await
            .expect("waiting for a delivery report hung")
            .expect("the producer stays alive");
        result
            .map_err(|(e, _)| e)
            .expect("the broker confirmed delivery");
    }

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &env.kafka_brokers)
        .set("group.id", format!("{topic}-group"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut seen = BTreeSet::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while seen.len() < RECORDS {
            let msg = consumer.recv().await.expect("consume");
            let key = String::from_utf8(msg.key().expect("keyed").to_vec()).expect("utf-8 key");
            let n: usize = key[1..].parse().expect("numeric key");
            let payload = msg
                .payload_view::<str>()
                .expect("payload")
                .expect("utf-8 payload");
            assert_eq!(payload, format!("{{\"n\":{n}}}"));
            seen.insert(n);
        }
    })
    .await
    .expect("consuming every produced record hung");
    assert_eq!(seen, (0..RECORDS).collect::<BTreeSet<_>>());

    let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;
}
