#!/usr/bin/env python3
"""Reads every message of a Kafka cluster's topics (all but the internal `__` ones) from
the beginning to their ends, with confluent-kafka, and prints one JSON line per message:
topic, partition, offset, key, headers and value as text.

Used by the kafka e2e tests (tests/e2e/kafka.rs) to read back what siemflow produced.
Lines come in (topic, partition) order, each partition in offset order. No consumer
group: nothing is committed, a second run reads everything again.

A partition's end is where the fetch reports end of partition, not the high watermark
of ListOffsets: tansu 0.6 answers that with the last record batch's base offset + 1, so
reading up to it would miss the last batch of every partition.

usage: read_topics.py BOOTSTRAP_SERVERS
"""
import json
import sys

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition


def text(data):
    return None if data is None else data.decode("utf-8", "replace")


def main():
    bootstrap = sys.argv[1]
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "siemflow-test-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    metadata = consumer.list_topics(timeout=30)
    partitions = [
        TopicPartition(topic, partition, OFFSET_BEGINNING)
        for topic in sorted(metadata.topics)
        if not topic.startswith("__")
        for partition in sorted(metadata.topics[topic].partitions)
    ]
    consumer.assign(partitions)
    messages = {(p.topic, p.partition): [] for p in partitions}
    at_end = set()
    while len(at_end) < len(partitions):
        message = consumer.poll(30)
        if message is None:
            sys.exit(f"nothing from the broker within 30 s; ended: {sorted(at_end)}")
        where = (message.topic(), message.partition())
        if message.error():
            if message.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(where)
                continue
            sys.exit(f"{where}: {message.error()}")
        messages[where].append(
            {
                "topic": message.topic(),
                "partition": message.partition(),
                "offset": message.offset(),
                "key": text(message.key()),
                "headers": {k: text(v) for k, v in (message.headers() or [])},
                "value": text(message.value()),
            }
        )
    for where in sorted(messages):
        for record in messages[where]:
            sys.stdout.write(json.dumps(record) + "\n")
    consumer.close()


if __name__ == "__main__":
    main()
