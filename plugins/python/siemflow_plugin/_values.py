"""The protocol's Value and Event <-> plain Python values."""

import datetime
import json

from . import plugin_pb2 as pb

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def from_value(value):
    """The Python value of a wire Value: None, bool, int, float, bytes, str, datetime (UTC),
    list or dict."""
    kind = value.WhichOneof("kind")
    if kind is None or kind == "null":
        return None
    if kind == "object":
        return {k: from_value(v) for k, v in value.object.fields.items()}
    if kind == "array":
        return [from_value(v) for v in value.array.values]
    if kind == "timestamp":
        ts = value.timestamp
        return _EPOCH + datetime.timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)
    return getattr(value, kind)


def to_value(obj, out=None):
    """The wire Value of a Python value (a naive datetime is taken as UTC; a tuple is a list)."""
    out = pb.Value() if out is None else out
    if obj is None:
        out.null = pb.NULL_VALUE
    elif isinstance(obj, bool):
        out.boolean = obj
    elif isinstance(obj, int):
        out.integer = obj
    elif isinstance(obj, float):
        out.float = obj
    elif isinstance(obj, str):
        out.string = obj
    elif isinstance(obj, (bytes, bytearray)):
        out.bytes = bytes(obj)
    elif isinstance(obj, datetime.datetime):
        if obj.tzinfo is None:
            obj = obj.replace(tzinfo=datetime.timezone.utc)
        delta = obj - _EPOCH
        seconds = delta.days * 86400 + delta.seconds
        out.timestamp.seconds = seconds
        out.timestamp.nanos = delta.microseconds * 1000
    elif isinstance(obj, dict):
        fields = out.object.fields
        out.object.SetInParent()
        for key, item in obj.items():
            to_value(item, fields[str(key)])
    elif isinstance(obj, (list, tuple)):
        out.array.SetInParent()
        for item in obj:
            to_value(item, out.array.values.add())
    else:
        raise TypeError(f"cannot send a {type(obj).__name__} as an event value")
    return out


JSON_EVENTS = "json-events"


def from_event(event):
    """The Python value of a wire Event, in either of its forms (see proto/plugin.proto)."""
    if not event.json:
        return from_value(event.value) if event.HasField("value") else None
    obj = json.loads(event.json)
    for exact in event.exact:
        # The JSON holds the nearest JSON form there; the exact value replaces it.
        path = exact.path
        if not path:
            obj = from_value(exact.value)
            continue
        parent = obj
        for segment in path[:-1]:
            parent = parent[_step(segment)]
        parent[_step(path[-1])] = from_value(exact.value)
    return obj


def _step(segment):
    return segment.field if segment.WhichOneof("kind") == "field" else segment.index


def to_event(obj, json_form=False):
    """A wire Event holding a Python value: as JSON text when siemflow agreed to it and
    the value is plain JSON (dict, list, str, int, float, bool, None); otherwise, e.g.
    with a datetime or bytes inside, as nested Values."""
    if json_form:
        try:
            text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            return pb.Event(json=text.encode("utf-8"))
        except (TypeError, ValueError):
            pass
    event = pb.Event()
    to_value(obj, event.value)
    return event
