"""The plugin side of proto/plugin.proto on grpcio: handshake, token check, the three
data streams, shutdown, JSON logging to stderr."""

import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

from . import plugin_pb2 as pb
from . import plugin_pb2_grpc as rpc
from ._values import JSON_EVENTS, from_event, from_value, to_event

SDK_NAME = "siemflow-plugin-python"
SDK_VERSION = "0.1.0"
PROTOCOL_VERSION = 1

log = logging.getLogger("siemflow_plugin")


class _JsonLines(logging.Formatter):
    """One JSON object per line: what siemflow re-logs at the line's level."""

    def format(self, record):
        line = {
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            "ts": self.formatTime(record),
            "logger": record.name,
        }
        if record.exc_info:
            line["message"] += "\n" + self.formatException(record.exc_info)
        return json.dumps(line)


def _setup_logging():
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("SIEMFLOW_PLUGIN_LOG_LEVEL", "INFO").upper())


# ---- what authors return ----


class Emit:
    """An event for a named output (declared in the component's `outputs`)."""

    __slots__ = ("output", "event")

    def __init__(self, output, event):
        self.output = output
        self.event = event


class Delivered:
    """A sink's answer: every event of the batch is safely out."""


class Retry:
    """A sink's answer: nothing is out; send the batch again after `after` seconds
    (None: siemflow's exponential backoff)."""

    def __init__(self, reason="", after=None):
        self.reason = reason
        self.after = after


class Rejected:
    """A sink's answer: the events at `indices` can never be delivered (siemflow
    dead-letters them with `reason`); the others are delivered."""

    def __init__(self, indices, reason):
        self.indices = list(indices)
        self.reason = reason


# ---- the server ----


class _Auth(grpc.ServerInterceptor):
    """Refuses any call without siemflow's per-run token."""

    def __init__(self, token):
        self._expected = "Bearer " + token

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong plugin token")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    def intercept_service(self, continuation, handler_call_details):
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization" and value == self._expected:
                return continuation(handler_call_details)
        return self._deny


class _Lifecycle(rpc.PluginServicer):
    def __init__(self, kind, schema, credit, configure, stopping):
        self._kind = kind
        self._schema = schema
        self._credit = credit
        self._configure = configure
        self._stopping = stopping
        self.config = {}
        self.json_events = False

    def Handshake(self, request, context):
        answer = pb.HandshakeResponse(
            sdk_name=SDK_NAME,
            sdk_version=SDK_VERSION,
            credit=self._credit,
            config_schema=json.dumps(self._schema) if self._schema else "",
        )
        if PROTOCOL_VERSION not in request.protocol_versions:
            answer.error = f"this plugin speaks protocol version {PROTOCOL_VERSION} only"
            return answer
        answer.protocol_version = PROTOCOL_VERSION
        if request.kind != self._kind:
            wanted = pb.ComponentKind.Name(self._kind)
            answer.error = f"this plugin is a {wanted}, configured as {pb.ComponentKind.Name(request.kind)}"
            return answer
        self.config = from_value(request.config) if request.HasField("config") else {}
        self.config = self.config or {}
        self.outputs = list(request.outputs)
        # Events as JSON text when siemflow reads them so: json is C, Values are Python.
        self.json_events = JSON_EVENTS in request.capabilities
        if self.json_events:
            answer.capabilities.append(JSON_EVENTS)
        if self._configure is not None and not request.describe_only:
            try:
                self._configure(self.config)
            except Exception as error:  # the plugin's own refusal, reported to siemflow
                answer.error = f"{type(error).__name__}: {error}"
        return answer

    def Ping(self, request, context):
        return pb.PingResponse()

    def Shutdown(self, request, context):
        self._stopping.set()
        return pb.ShutdownResponse()


def _watch_parent(stopping):
    """Ends the plugin when siemflow is gone (its parent changed)."""
    parent = os.getppid()
    while not stopping.wait(1.0):
        if os.getppid() != parent:
            log.warning("siemflow is gone; exiting")
            stopping.set()


def _serve(kind, register, schema, credit, configure, workers=8):
    _setup_logging()
    address = os.environ.get("SIEMFLOW_PLUGIN_SOCKET")
    token = os.environ.get("SIEMFLOW_PLUGIN_TOKEN")
    if not address or not token:
        sys.stderr.write(
            "this is a siemflow plugin: siemflow starts it (type = \"plugin\" in a pipeline),"
            " giving it SIEMFLOW_PLUGIN_SOCKET and SIEMFLOW_PLUGIN_TOKEN\n"
        )
        sys.exit(2)
    stopping = threading.Event()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        interceptors=[_Auth(token)],
        options=[
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20),
        ],
    )
    lifecycle = _Lifecycle(kind, schema, credit, configure, stopping)
    rpc.add_PluginServicer_to_server(lifecycle, server)
    register(server, lifecycle, stopping)
    server.add_insecure_port(address)
    server.start()
    # SIGTERM: finish what is in flight (grace), then exit; SIGINT is siemflow's to handle.
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(stopping,), daemon=True).start()
    log.debug("listening on %s", address)
    stopping.wait()
    server.stop(grace=5).wait()
    sys.exit(0)


# ---- transform ----


def _transform_results(fn, config, json_form, events, pool):
    def one(event):
        result = pb.EventResult()
        try:
            out = fn(from_event(event), config)
        except Exception as error:
            log.debug("event failed", exc_info=True)
            result.error = f"{type(error).__name__}: {error}"
            return result
        if out is None:
            return result
        items = out if isinstance(out, list) else [out]
        try:
            for item in items:
                emitted = result.emitted.add()
                if isinstance(item, Emit):
                    emitted.output = item.output
                    emitted.event.CopyFrom(to_event(item.event, json_form))
                else:
                    emitted.event.CopyFrom(to_event(item, json_form))
        except Exception as error:
            del result.emitted[:]
            result.error = f"{type(error).__name__}: {error}"
        return result

    if pool is None:
        return [one(e) for e in events]
    return list(pool.map(one, events))


def serve_transform(fn, *, schema=None, credit=4, threads=1, configure=None):
    """Serves `fn(event, config)` as a transform: it returns the event (a dict), a list
    of events, `Emit(output, event)` items, or None to drop the event; an exception
    fails that event only (siemflow sends it to `<id>.dropped` with the message).

    `schema`: a JSON Schema (dict) of the `config` table, checked by siemflow.
    `credit`: batches siemflow may send before an answer. `threads` > 1 maps the events
    of a batch on that many threads (for I/O such as HTTP lookups), keeping their order.
    `configure(config)`: called once with the `config` table; raise to refuse it."""
    pool = futures.ThreadPoolExecutor(max_workers=threads) if threads > 1 else None

    class Transform(rpc.TransformServicer):
        def __init__(self, lifecycle):
            self._lifecycle = lifecycle

        def Process(self, request_iterator, context):
            for batch in request_iterator:
                results = _transform_results(
                    fn, self._lifecycle.config, self._lifecycle.json_events, batch.events, pool
                )
                yield pb.TransformResult(batch_id=batch.batch_id, results=results)

    def register(server, lifecycle, stopping):
        rpc.add_TransformServicer_to_server(Transform(lifecycle), server)

    _serve(pb.COMPONENT_KIND_TRANSFORM, register, schema, credit, configure)


# ---- source ----


def serve_source(read, *, on_ack=None, schema=None, credit=4, configure=None, replay_after=1.0):
    """Serves a source. `read(config, stopping)` is a generator that yields
    `(events, token)` pairs (a list of dicts and anything the author wants back);
    `on_ack(token)` is called once siemflow delivered the batch to every sink, in the
    order the batches were yielded (on the SDK's ack thread, also while the generator
    waits for data), so a cursor saved there never passes undelivered data.
    A batch siemflow could not deliver is sent again after `replay_after` seconds, so
    the author never sees a failure. At most `credit` batches are unacknowledged: the
    generator is not resumed until an ack frees one. `stopping` (a threading.Event) is
    set when siemflow stops the source; the generator should then return."""

    class Source(rpc.SourceServicer):
        def __init__(self, lifecycle, stopping):
            self._lifecycle = lifecycle
            self._stopping = stopping

        def Read(self, request_iterator, context):
            # Acks are settled on their own thread as they arrive, so a cursor is saved
            # even while the generator waits for new data.
            lock = threading.Condition()
            closed = threading.Event()
            # Per batch, by the id it was first sent under (its place in the yield order):
            # [token, events, state], state "sent", "failed" (waiting to be sent again) or
            # "delivered" (waiting for the batches before it).
            outstanding = {}
            order = []  # first batch ids in yield order, for ordered on_ack
            sent_as = {}  # batch id on the wire -> first batch id (a replay gets a new id)
            replays = []  # (when, first batch id) of batches that failed downstream
            next_id = [1]

            def settle(ack):
                first = sent_as.pop(ack.batch_id, None)
                if first is None:
                    return
                entry = outstanding[first]
                if ack.delivered:
                    entry[2] = "delivered"
                else:
                    # It keeps its place: the batches after it are not acknowledged to
                    # the author before it is delivered, so no cursor passes it.
                    entry[2] = "failed"
                    replays.append((time.monotonic() + replay_after, first))
                while order and outstanding[order[0]][2] == "delivered":
                    token = outstanding.pop(order.pop(0))[0]
                    if on_ack is not None:
                        on_ack(token)

            def take_acks():
                try:
                    for ack in request_iterator:
                        with lock:
                            settle(ack)
                            lock.notify_all()
                except grpc.RpcError:
                    pass
                closed.set()
                with lock:
                    lock.notify_all()

            def send(first=None, events=None, token=None):
                """A new batch (`events`, `token`), or the failed batch `first` again."""
                batch_id = next_id[0]
                next_id[0] += 1
                if first is None:
                    first = batch_id
                    outstanding[first] = [token, events, "sent"]
                    order.append(first)
                else:
                    outstanding[first][2] = "sent"
                    events = outstanding[first][1]
                sent_as[batch_id] = first
                json_form = self._lifecycle.json_events
                return pb.SourceBatch(
                    batch_id=batch_id, events=[to_event(e, json_form) for e in events]
                )

            def in_flight():
                return sum(1 for entry in outstanding.values() if entry[2] == "sent")

            threading.Thread(target=take_acks, daemon=True).start()
            generator = read(self._lifecycle.config, closed)
            exhausted = False
            while not closed.is_set():
                replay = None
                with lock:
                    # At most `credit` batches unacknowledged (a failed one keeps its
                    # share until delivered); a due replay goes when one is free on the wire.
                    while not closed.is_set():
                        now = time.monotonic()
                        due = None
                        if in_flight() < credit:
                            due = next((r for r in replays if r[0] <= now), None)
                        if due is not None or len(outstanding) < credit:
                            break
                        lock.wait(0.05)
                    if closed.is_set():
                        break
                    if due is not None:
                        replays.remove(due)
                        replay = send(first=due[1])
                    elif exhausted and not outstanding:
                        return
                if replay is not None:
                    yield replay
                    continue
                if exhausted:
                    closed.wait(0.05)
                    continue
                try:
                    events, token = next(generator)
                except StopIteration:
                    exhausted = True
                    continue
                if events:
                    with lock:
                        fresh = send(events=list(events), token=token)
                    yield fresh

    def register(server, lifecycle, stopping):
        rpc.add_SourceServicer_to_server(Source(lifecycle, stopping), server)

    _serve(pb.COMPONENT_KIND_SOURCE, register, schema, credit, configure)


# ---- sink ----


def _sink_result(batch_id, outcome):
    result = pb.SinkResult(batch_id=batch_id)
    if outcome is None or isinstance(outcome, Delivered):
        result.delivered.SetInParent()
    elif isinstance(outcome, Retry):
        result.retry.reason = outcome.reason
        result.retry.after_ms = int((outcome.after or 0) * 1000)
    elif isinstance(outcome, Rejected):
        result.rejected.indices.extend(outcome.indices)
        result.rejected.reason = outcome.reason
    else:
        raise TypeError(f"a sink returns Delivered, Retry or Rejected, not {outcome!r}")
    return result


def serve_sink(deliver, *, schema=None, credit=1, configure=None):
    """Serves `deliver(events, config)` as a sink: it returns `Delivered()` (or None),
    `Retry(reason, after=seconds)` or `Rejected(indices, reason)`; an exception is a
    Retry. siemflow keeps at most `credit` batches waiting for an answer."""

    class Sink(rpc.SinkServicer):
        def __init__(self, lifecycle):
            self._lifecycle = lifecycle

        def Write(self, request_iterator, context):
            for batch in request_iterator:
                events = [from_event(e) for e in batch.events]
                try:
                    outcome = deliver(events, self._lifecycle.config)
                except Exception as error:
                    log.warning("delivery failed: %s", error)
                    outcome = Retry(f"{type(error).__name__}: {error}")
                yield _sink_result(batch.batch_id, outcome)

    def register(server, lifecycle, stopping):
        rpc.add_SinkServicer_to_server(Sink(lifecycle), server)

    _serve(pb.COMPONENT_KIND_SINK, register, schema, credit, configure)
