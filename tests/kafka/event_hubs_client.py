#!/usr/bin/env python3
"""An Event Hubs client as Microsoft documents it (confluent-kafka/librdkafka: SASL_SSL,
PLAIN, user name `$ConnectionString`, the connection string as password), pointed at the
simulator's front (tests/e2e/event_hubs.rs).

It produces COUNT messages to TOPIC, then reads them back in a consumer group, and prints
one JSON line: {"produced": n, "consumed": m}. When the front refuses the credentials it
prints {"refused": "<librdkafka error name>", "reason": "..."} at the first error callback
(librdkafka would otherwise keep retrying) and exits 0: the caller judges.

usage: event_hubs_client.py BOOTSTRAP CA_FILE CONNECTION_STRING TOPIC COUNT
"""
import json
import sys

from confluent_kafka import Consumer, KafkaError, Producer

DEADLINE_POLLS = 600  # x 0.1 s: only a guard against a hung peer, not a synchronisation


def main():
    bootstrap, ca_file, connection_string, topic, count = sys.argv[1:6]
    count = int(count)
    common = {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "$ConnectionString",
        "sasl.password": connection_string,
        "ssl.ca.location": ca_file,
    }
    refused = []

    def on_error(error):
        if error.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
            refused.append((error.name(), error.str()))

    producer = Producer({**common, "error_cb": on_error, "enable.idempotence": True})
    delivered = []
    failed = []

    def report(error, message):
        (failed if error is not None else delivered).append(error)

    for i in range(count):
        producer.produce(topic, value=json.dumps({"Seq": i}), on_delivery=report)
    for _ in range(DEADLINE_POLLS):
        producer.poll(0.1)
        if refused:
            name, reason = refused[0]
            print(json.dumps({"refused": name, "reason": reason}))
            producer.purge()
            return
        if len(delivered) + len(failed) == count:
            break
    if failed or len(delivered) != count:
        sys.exit(f"{len(delivered)} of {count} delivered; failures: {failed[:3]}")

    consumer = Consumer(
        {
            **common,
            "group.id": "event-hubs-client",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "error_cb": on_error,
        }
    )
    consumer.subscribe([topic])
    seen = set()
    for _ in range(DEADLINE_POLLS):
        message = consumer.poll(0.1)
        if message is None:
            continue
        if message.error():
            sys.exit(f"consumer error: {message.error()}")
        seen.add(json.loads(message.value())["Seq"])
        if len(seen) == count:
            break
    consumer.close()
    print(json.dumps({"produced": len(delivered), "consumed": len(seen)}))


if __name__ == "__main__":
    main()
