"""The protocol's Value <-> plain Python values."""

import datetime

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


def to_event(obj):
    """A wire Event holding a Python value."""
    event = pb.Event()
    to_value(obj, event.value)
    return event
