#!/usr/bin/env python3
"""An OTLP logs receiver that records what arrives: the peer the opentelemetry sink's
end-to-end tests deliver to (tests/e2e/opentelemetry/sink.rs).

It serves OTLP/gRPC (LogsService/Export, on grpcio with the generated stubs of the
opentelemetry-proto package) and OTLP/HTTP (POST /v1/logs, protobuf or JSON, gzip or
not) on two ephemeral loopback ports, and prints them once, as one JSON line on stdout:
{"grpc": PORT, "http": PORT}. Then it serves until killed.

Every request is written to --out as one JSON line, before it is answered:
  {"time": <wall clock, s>, "transport": "grpc"|"http", "records": N,
   "answer": "ok"|"partial"|"unavailable"|"resource_exhausted"|"status"|"too_large",
   "fault": <the fault applied, or null>, "rejected": [<indexes of rejected records>],
   "metadata": {<request headers / gRPC metadata, text values only>},
   "encoding": "gzip"|"identity", "content_type": "...",
   "resources": [{"attributes": {...}, "scopes": [{"name", "version", "attributes",
                  "records": [{"body", "attributes", "severity_number", "severity_text",
                               "time_unix_nano", "observed_time_unix_nano", "event_name",
                               "trace_id", "span_id", "flags"}]}]}]}
AnyValues are written as plain JSON (kvlist -> object, array -> list, bytes -> base64
text); trace and span ids as hex.

Faults (--faults: a JSON list, inline or @file) are applied to requests in the order
they arrive, one entry per request (an entry with "times": k applies to the next k
requests; "transport": "grpc"|"http" applies it to that transport's requests only);
once the list is used up every request is answered with success. A request without
records (a healthcheck) is always answered with success and takes no fault. Kinds:
  {"kind": "partial", "rejected": N, "message": "..."}   partial_success: the last N
      records of the request are the ones rejected (OTLP does not say which; this
      receiver picks the tail, and lists their indexes in "rejected")
  {"kind": "unavailable", "retry_delay": S}   gRPC UNAVAILABLE (with a RetryInfo in
      grpc-status-details-bin when retry_delay is given), HTTP 503 (Retry-After: S)
  {"kind": "resource_exhausted", "retry_delay": S}   gRPC RESOURCE_EXHAUSTED (RetryInfo
      only when retry_delay is given), HTTP 429 (Retry-After only when given)
  {"kind": "status", "code": "INVALID_ARGUMENT", "http": 400, "message": "..."}
  {"kind": "slow", "delay": S}   answers success after S seconds
Any fault may also carry "delay": S, waited before it is answered.

--max-bytes N limits a request (after decompression): gRPC answers what grpcio answers
for a larger message (RESOURCE_EXHAUSTED, "Received message larger than max"), HTTP 413.
--tls-cert/--tls-key serve both ports over TLS.
"""

import argparse
import base64
import gzip
import json
import math
import sys
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import duration_pb2, json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as pb
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc as rpc


def any_value(value):
    """An AnyValue as plain JSON."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return key_values(value.kvlist_value.values)
    return {"unsupported": kind}


def key_values(pairs):
    return {pair.key: any_value(pair.value) for pair in pairs}


def record_json(record):
    return {
        "body": any_value(record.body) if record.HasField("body") else None,
        "attributes": key_values(record.attributes),
        "severity_number": record.severity_number,
        "severity_text": record.severity_text,
        "time_unix_nano": record.time_unix_nano,
        "observed_time_unix_nano": record.observed_time_unix_nano,
        "event_name": record.event_name,
        "trace_id": record.trace_id.hex(),
        "span_id": record.span_id.hex(),
        "flags": record.flags,
    }


def resources_json(request):
    resources = []
    for resource_logs in request.resource_logs:
        scopes = []
        for scope_logs in resource_logs.scope_logs:
            scopes.append({
                "name": scope_logs.scope.name,
                "version": scope_logs.scope.version,
                "attributes": key_values(scope_logs.scope.attributes),
                "records": [record_json(r) for r in scope_logs.log_records],
            })
        resources.append({
            "attributes": key_values(resource_logs.resource.attributes),
            "scopes": scopes,
        })
    return resources


def record_count(request):
    return sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)


class Receiver:
    """What both transports share: the fault plan and the arrival log."""

    def __init__(self, out, faults):
        self.out = open(out, "a", buffering=1)
        self.faults = list(faults)
        self.lock = threading.Lock()

    def next_fault(self, transport, request):
        if record_count(request) == 0:
            # An empty request is a sender's healthcheck: it takes no fault of the plan.
            return None
        with self.lock:
            for index, fault in enumerate(self.faults):
                if fault.get("transport", transport) != transport:
                    continue
                times = fault.get("times", 1)
                if times <= 1:
                    del self.faults[index]
                else:
                    self.faults[index] = dict(fault, times=times - 1)
                return fault
            return None

    def log(self, arrived, transport, request, fault, answer, rejected, metadata,
            encoding, content_type):
        line = {
            "time": arrived,
            "transport": transport,
            "records": record_count(request) if request is not None else None,
            "answer": answer,
            "fault": fault,
            "rejected": rejected,
            "metadata": metadata,
            "encoding": encoding,
            "content_type": content_type,
            "resources": resources_json(request) if request is not None else [],
        }
        text = json.dumps(line, sort_keys=True)
        with self.lock:
            self.out.write(text + "\n")
            self.out.flush()

    def judge(self, request, fault):
        """The answer to a request: (answer word, response or None, rejected indexes)."""
        if fault is None or fault["kind"] == "slow":
            return "ok", pb.ExportLogsServiceResponse(), []
        if fault["kind"] == "partial":
            count = record_count(request)
            rejected = min(int(fault["rejected"]), count)
            response = pb.ExportLogsServiceResponse()
            response.partial_success.rejected_log_records = rejected
            response.partial_success.error_message = fault.get("message", "")
            return "partial", response, list(range(count - rejected, count))
        return fault["kind"], None, []


GRPC_CODES = {
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "resource_exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def rpc_status(code, message, retry_delay):
    """google.rpc.Status with a RetryInfo when a delay is given, serialized."""
    status = status_pb2.Status(code=code.value[0], message=message)
    if retry_delay is not None:
        info = error_details_pb2.RetryInfo()
        seconds = float(retry_delay)
        info.retry_delay.CopyFrom(duration_pb2.Duration(
            seconds=int(seconds), nanos=int(round((seconds - int(seconds)) * 1e9))))
        status.details.add().Pack(info)
    return status


class LogsService(rpc.LogsServiceServicer):
    def __init__(self, receiver):
        self.receiver = receiver

    def Export(self, request, context):
        arrived = time.time()
        metadata = {k: v for k, v in context.invocation_metadata() if not k.endswith("-bin")}
        fault = self.receiver.next_fault("grpc", request)
        answer, response, rejected = self.receiver.judge(request, fault)
        self.receiver.log(arrived, "grpc", request, fault, answer, rejected, metadata,
                          metadata.get("grpc-encoding", "identity"), "application/grpc")
        if fault is not None and "delay" in fault:
            time.sleep(float(fault["delay"]))
        if response is not None:
            return response
        kind = fault["kind"]
        message = fault.get("message", f"receiver fault: {kind}")
        if kind == "status":
            code = getattr(grpc.StatusCode, fault["code"])
            retry_delay = fault.get("retry_delay")
        else:
            code = GRPC_CODES[kind]
            retry_delay = fault.get("retry_delay")
        if retry_delay is not None:
            # The standard carriage of error details (what tonic-types and grpc-status
            # read): a google.rpc.Status in the grpc-status-details-bin trailer.
            status = rpc_status(code, message, retry_delay)
            context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
        context.abort(code, message)


def http_handler(receiver, max_bytes):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            arrived = time.time()
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            encoding = self.headers.get("Content-Encoding", "identity")
            content_type = self.headers.get("Content-Type", "")
            metadata = {k.lower(): v for k, v in self.headers.items()}
            if self.path != "/v1/logs":
                return self.reply(404, "text/plain", b"not found")
            if encoding == "gzip":
                body = gzip.decompress(body)
            json_body = content_type.startswith("application/json")
            if max_bytes is not None and len(body) > max_bytes:
                receiver.log(arrived, "http", None, None, "too_large", [], metadata, encoding,
                             content_type)
                return self.status_reply(413, "RESOURCE_EXHAUSTED",
                                         f"request of {len(body)} bytes is larger than {max_bytes}",
                                         json_body)
            request = pb.ExportLogsServiceRequest()
            try:
                if json_body:
                    json_format.Parse(body, request, ignore_unknown_fields=True)
                else:
                    request.ParseFromString(body)
            except Exception as error:  # a malformed body is the sender's bug: say so
                receiver.log(arrived, "http", None, None, "status", [], metadata, encoding,
                             content_type)
                return self.status_reply(400, "INVALID_ARGUMENT", f"cannot decode: {error}",
                                         json_body)
            fault = receiver.next_fault("http", request)
            answer, response, rejected = receiver.judge(request, fault)
            receiver.log(arrived, "http", request, fault, answer, rejected, metadata, encoding,
                         content_type)
            if fault is not None and "delay" in fault:
                time.sleep(float(fault["delay"]))
            if response is not None:
                if json_body:
                    return self.reply(200, "application/json",
                                      json_format.MessageToJson(response).encode())
                return self.reply(200, "application/x-protobuf", response.SerializeToString())
            kind = fault["kind"]
            message = fault.get("message", f"receiver fault: {kind}")
            retry_delay = fault.get("retry_delay")
            headers = {}
            if retry_delay is not None:
                # Retry-After takes whole seconds: never less than was asked for.
                headers["Retry-After"] = str(math.ceil(float(retry_delay)))
            if kind == "unavailable":
                return self.status_reply(503, "UNAVAILABLE", message, json_body, headers)
            if kind == "resource_exhausted":
                return self.status_reply(429, "RESOURCE_EXHAUSTED", message, json_body, headers)
            return self.status_reply(int(fault.get("http", 500)), fault.get("code", "UNKNOWN"),
                                     message, json_body, headers)

        def status_reply(self, http_status, code, message, json_body, headers=None):
            code = getattr(code_pb2, code.rsplit(".", 1)[-1], code_pb2.UNKNOWN)
            status = status_pb2.Status(code=code, message=message)
            if json_body:
                body, content_type = json_format.MessageToJson(status).encode(), "application/json"
            else:
                body, content_type = status.SerializeToString(), "application/x-protobuf"
            self.reply(http_status, content_type, body, headers or {})

        def reply(self, status, content_type, body, headers=None):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the JSON-lines file of arrivals")
    parser.add_argument("--faults", default="[]", help="a JSON list of faults, or @file")
    parser.add_argument("--max-bytes", type=int, default=None,
                        help="the largest request taken, after decompression")
    parser.add_argument("--tls-cert", help="PEM certificate to serve TLS with")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    args = parser.parse_args()
    faults = args.faults
    if faults.startswith("@"):
        with open(faults[1:]) as f:
            faults = f.read()
    receiver = Receiver(args.out, json.loads(faults))

    options = [("grpc.max_receive_message_length", args.max_bytes or 64 << 20)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=options)
    rpc.add_LogsServiceServicer_to_server(LogsService(receiver), server)
    if args.tls_cert:
        with open(args.tls_cert, "rb") as f:
            cert = f.read()
        with open(args.tls_key, "rb") as f:
            key = f.read()
        grpc_port = server.add_secure_port(
            "127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    else:
        grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    http = ThreadingHTTPServer(("127.0.0.1", 0), http_handler(receiver, args.max_bytes))
    http.daemon_threads = True
    if args.tls_cert:
        import ssl
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        http.socket = context.wrap_socket(http.socket, server_side=True)
    threading.Thread(target=http.serve_forever, daemon=True).start()

    print(json.dumps({"grpc": grpc_port, "http": http.server_address[1]}), flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
