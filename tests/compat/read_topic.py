"""Reads a Kafka topic the way Scrapy Cluster's consumers do (its kafkadump and REST service
use kafka-python's KafkaConsumer and json.loads each value), and prints each message's value
as one line of JSON.

    read_topic.py BROKERS TOPIC COUNT [IDLE_SECONDS]

Reads from the beginning until COUNT messages were read (0: every message), or until no
message came for IDLE_SECONDS (default 20); exits 0 when COUNT were read, 1 otherwise. A batch compressed with
a codec the stock kafka-python cannot decode (lz4, snappy, zstd need extra packages) makes
kafka-python raise, and this script exit non-zero with its error: the point of the test.
"""

import json
import sys

from kafka import KafkaConsumer


def stock_codecs_only():
    """The environment must be a stock one: no optional codec package installed."""
    for module in ("lz4", "snappy", "zstandard", "cramjam"):
        try:
            __import__(module)
        except ImportError:
            continue
        sys.exit(f"read_topic.py: {module} is installed; Scrapy Cluster's clients do not have it")


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    brokers, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    idle = float(sys.argv[4]) if len(sys.argv) == 5 else 20.0
    stock_codecs_only()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=brokers.split(","),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(idle * 1000),
    )
    seen = 0
    for message in consumer:
        print(json.dumps(json.loads(message.value.decode("utf-8"))), flush=True)
        seen += 1
        if count and seen >= count:
            break
    consumer.close()
    if seen < count:
        sys.exit(f"read_topic.py: {seen} of {count} messages on {topic}")


if __name__ == "__main__":
    main()
