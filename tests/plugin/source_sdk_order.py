"""Drives the Python SDK's source stream (serve_source's Read) with scripted acks, no
siemflow: a batch siemflow fails is sent again, keeps its place, and no later batch is
acknowledged to the author before it — a cursor saved in on_ack never passes it.

Run by tests/e2e/plugin/source.rs; exits non-zero with a message on a failure."""

import os
import queue
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../plugins/python"))

from siemflow_plugin import _server, plugin_pb2 as pb  # noqa: E402

captured = {}
_server.rpc.add_SourceServicer_to_server = lambda servicer, server: captured.setdefault("source", servicer)
_server._serve = lambda kind, register, schema, credit, configure: register(None, Lifecycle(), threading.Event())


class Lifecycle:
    config = {}
    json_events = True


acked = []
stop = threading.Event()


def read(config, stopping):
    for n in range(1, 6):
        yield [{"n": n}], n
    stopping.wait(30)


_server.serve_source(read, on_ack=acked.append, credit=3, replay_after=0.05)
acks = queue.Queue()


def requests():
    while True:
        ack = acks.get()
        if ack is None:
            return
        yield ack


stream = captured["source"].Read(requests(), None)


def expect(what, condition):
    if not condition:
        sys.exit(f"FAILED: {what} (acked to the author: {acked})")


def batch():
    b = next(stream)
    return b.batch_id, [e for e in b.events]


def ack(batch_id, delivered):
    acks.put(pb.SourceAck(batch_id=batch_id, delivered=delivered))


def settled(count):
    for _ in range(3000):  # up to 30 s: the ack thread is slow only on a loaded machine
        if len(acked) >= count:
            return
        threading.Event().wait(0.01)


first, _ = batch()
second, _ = batch()
third, _ = batch()
# The later two are delivered first, then the first fails downstream. Acks are settled in
# the order they arrive, so once the replay comes out every one of the three was settled:
# what on_ack saw by then is final, no waiting needed.
ack(second, True)
ack(third, True)
ack(first, False)
replayed, events = batch()  # the credit is free again: the failed one goes first when due
expect("the failed batch is sent again under a new id", replayed not in (first, second, third))
expect("no batch after a failed one is acknowledged before it", acked == [])
ack(replayed, True)
settled(3)
expect("the replayed batch and those after it are acknowledged in order", acked[:3] == [1, 2, 3])
fourth, _ = batch()
fifth, _ = batch()
ack(fourth, True)
ack(fifth, True)
settled(5)
expect("every batch acknowledged once, in order", acked == [1, 2, 3, 4, 5])
acks.put(None)
print("ok")
