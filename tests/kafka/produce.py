#!/usr/bin/env python3
"""Produces JSON records to a Kafka topic with confluent-kafka, as a real producer of the
data siemflow's kafka source consumes (tests/e2e/kafka.rs): record i is
{"Seq": i, "UserId": "user-<i % 97>", ...}, keyed by its UserId. Exits non-zero unless
every record was acknowledged by the broker.

usage: produce.py BOOTSTRAP_SERVERS TOPIC FIRST COUNT
"""
import json
import sys

from confluent_kafka import Producer


def main():
    bootstrap, topic, first, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    failures = []

    def report(error, message):
        if error is not None:
            failures.append(str(error))

    for i in range(first, first + count):
        user = f"user-{i % 97:02}@contoso.example"
        record = {"Seq": i, "UserId": user, "Operation": "UserLoggedIn", "Workload": "Exchange"}
        while True:
            try:
                producer.produce(
                    topic,
                    key=user,
                    value=json.dumps(record),
                    headers=[("source", b"produce.py")],
                    on_delivery=report,
                )
                break
            except BufferError:
                producer.poll(0.1)
    left = producer.flush(60)
    if left or failures:
        sys.exit(f"{left} records unflushed, {len(failures)} failed: {failures[:3]}")


if __name__ == "__main__":
    main()
