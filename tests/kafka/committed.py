#!/usr/bin/env python3
"""Prints the offsets a consumer group committed for a topic, as one JSON object
{"<partition>": offset} (partitions without a commit are left out), with confluent-kafka.
Used by tests/e2e/kafka.rs to check what siemflow's kafka source committed.

usage: committed.py BOOTSTRAP_SERVERS GROUP TOPIC
"""
import json
import sys

from confluent_kafka import Consumer, TopicPartition


def main():
    bootstrap, group, topic = sys.argv[1:4]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    metadata = consumer.list_topics(topic, timeout=30)
    partitions = [TopicPartition(topic, p) for p in sorted(metadata.topics[topic].partitions)]
    committed = consumer.committed(partitions, timeout=30)
    print(json.dumps({str(p.partition): p.offset for p in committed if p.offset >= 0}))
    consumer.close()


if __name__ == "__main__":
    main()
