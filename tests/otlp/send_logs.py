"""Sends OTLP log records to the opentelemetry source with OpenTelemetry's own Python SDK.

    send_logs.py grpc ENDPOINT COUNT   LoggerProvider + BatchLogRecordProcessor +
                                       the gRPC OTLPLogExporter, gzip on
    send_logs.py http ENDPOINT COUNT   the same with the HTTP/protobuf exporter
    send_logs.py json ENDPOINT COUNT   OTLP/JSON POSTed by hand, gzip on (the SDK's HTTP
                                       exporter only sends protobuf), retrying 429/502/503/504
                                       after Retry-After as the OTLP spec says

Options (gRPC and HTTP): --ca PEM trusts that CA (an https endpoint), --cert PEM --key PEM
present a client certificate, --token T sends "authorization: Bearer T", --timeout S bounds
each export with its retries (default 60).

Record i has body {"Operation": "op-<i>", "n": i} and attributes seq=i, tenant="t<i%3>",
ratio=i/8, even=(i%2==0), tags=["a", "<i>"]; event name "siemflow.test", severity INFO,
timestamp 1767225600 s + i µs. Prints one JSON line: what the exporter reported (exports
by result, retryable answers seen by status, exports given up by status).
"""

import argparse
import gzip
import json
import logging
import sys
import time
import urllib.error
import urllib.request
from collections import Counter

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

BASE_NANOS = 1_767_225_600 * 10**9
EVENT_NAME = "siemflow.test"

exports = Counter()
retries = Counter()
failures = Counter()


class Retries(logging.Handler):
    """Counts the exporters' "Transient error <code> ... retrying" warnings by code, and
    their "Failed to export" errors by the status they gave up on (gRPC "error code: X",
    HTTP "batch code: N")."""

    def emit(self, record):
        text = record.getMessage()
        if "Transient error" in text:
            retries[text.split()[2]] += 1
        elif "Failed to export" in text:
            if "error code: " in text:
                failures[text.split("error code: ", 1)[1].split(",")[0]] += 1
            elif "batch code: " in text:
                failures["HTTP " + text.split("batch code: ", 1)[1].split(",")[0]] += 1
            else:
                failures["other"] += 1


def attributes(i):
    return {"seq": i, "tenant": f"t{i % 3}", "ratio": i / 8, "even": i % 2 == 0, "tags": ["a", str(i)]}


def counted(exporter_class):
    class Counted(exporter_class):
        def export(self, batch):
            result = super().export(batch)
            exports[result.name] += 1
            return result

    return Counted


def send_with_sdk(transport, endpoint, count, options):
    headers = {"authorization": f"Bearer {options.token}"} if options.token else None
    if transport == "grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        def read(path):
            if path is None:
                return None
            with open(path, "rb") as file:
                return file.read()

        credentials = None
        if options.ca:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=read(options.ca),
                private_key=read(options.key),
                certificate_chain=read(options.cert),
            )
        exporter = counted(OTLPLogExporter)(
            endpoint=endpoint,
            insecure=credentials is None,
            credentials=credentials,
            headers=headers,
            compression=grpc.Compression.Gzip,
            timeout=options.timeout,
        )
    else:
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        exporter = counted(OTLPLogExporter)(
            endpoint=endpoint,
            certificate_file=options.ca,
            client_certificate_file=options.cert,
            client_key_file=options.key,
            headers=headers,
            compression=Compression.Gzip,
            timeout=options.timeout,
        )
    provider = LoggerProvider(resource=Resource.create({"service.name": "send_logs", "test.run": transport}))
    # The queue holds every record: the SDK drops, silently, what does not fit.
    provider.add_log_record_processor(
        BatchLogRecordProcessor(
            exporter, max_queue_size=max(count, 1000), max_export_batch_size=1000, schedule_delay_millis=50
        )
    )
    logger = provider.get_logger("siemflow.tests", "1.2.3")
    for i in range(count):
        logger.emit(
            timestamp=BASE_NANOS + i * 1000,
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body={"Operation": f"op-{i}", "n": i},
            attributes=attributes(i),
            event_name=EVENT_NAME,
        )
    provider.force_flush(timeout_millis=300_000)
    provider.shutdown()


def any_value(value):
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": key_values(value)}}
    raise TypeError(value)


def key_values(mapping):
    return [{"key": k, "value": any_value(v)} for k, v in mapping.items()]


def send_json(endpoint, count, batch=1000):
    for start in range(0, count, batch):
        records = [
            {
                "timeUnixNano": str(BASE_NANOS + i * 1000),
                "observedTimeUnixNano": str(BASE_NANOS + i * 1000),
                "severityNumber": 9,
                "severityText": "INFO",
                "body": any_value({"Operation": f"op-{i}", "n": i}),
                "attributes": key_values(attributes(i)),
                "eventName": EVENT_NAME,
            }
            for i in range(start, min(start + batch, count))
        ]
        request = {
            "resourceLogs": [
                {
                    "resource": {"attributes": key_values({"service.name": "send_logs", "test.run": "json"})},
                    "scopeLogs": [{"scope": {"name": "siemflow.tests", "version": "1.2.3"}, "logRecords": records}],
                }
            ]
        }
        body = gzip.compress(json.dumps(request).encode())
        for attempt in range(10):
            http = urllib.request.Request(
                endpoint,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            )
            try:
                with urllib.request.urlopen(http, timeout=60) as response:
                    answer = json.loads(response.read() or b"{}")
                    exports["PARTIAL" if answer.get("partialSuccess") else "SUCCESS"] += 1
                    break
            except urllib.error.HTTPError as error:
                if error.code not in (429, 502, 503, 504):
                    exports[f"HTTP {error.code}"] += 1
                    break
                retries[f"HTTP {error.code}"] += 1
                time.sleep(float(error.headers.get("Retry-After", "1")))
        else:
            exports["FAILURE"] += 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("transport", choices=["grpc", "http", "json"])
    parser.add_argument("endpoint")
    parser.add_argument("count", type=int)
    parser.add_argument("--ca")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--token")
    parser.add_argument("--timeout", type=float, default=60)
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("opentelemetry").addHandler(Retries())
    if options.transport == "json":
        send_json(options.endpoint, options.count)
    else:
        send_with_sdk(options.transport, options.endpoint, options.count, options)
    print(json.dumps({"exports": exports, "retries": retries, "failures": failures}), flush=True)


if __name__ == "__main__":
    main()
