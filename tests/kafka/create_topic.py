#!/usr/bin/env python3
"""Creates a topic with a given number of partitions with confluent-kafka's AdminClient
and waits until the broker's metadata shows all of them (tansu auto-creates a topic with
4 partitions; tests that need another count create it first).

usage: create_topic.py BOOTSTRAP_SERVERS TOPIC PARTITIONS
"""
import sys
import time

from confluent_kafka.admin import AdminClient, NewTopic


def main():
    bootstrap, topic, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    futures[topic].result(timeout=30)
    deadline = time.monotonic() + 30
    while True:
        metadata = admin.list_topics(topic, timeout=10)
        found = metadata.topics.get(topic)
        if found is not None and found.error is None and len(found.partitions) == partitions:
            return
        if time.monotonic() > deadline:
            sys.exit(f"{topic} has {0 if found is None else len(found.partitions)} partitions, not {partitions}")
        time.sleep(0.1)


if __name__ == "__main__":
    main()
