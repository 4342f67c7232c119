"""siemflow external plugins in Python: a transform, a source or a sink in a few lines.

    from siemflow_plugin import serve_transform

    def enrich(event, config):
        event["team"] = "soc"
        return event            # a dict, a list of dicts, Emit(...), or None to drop

    serve_transform(enrich)

siemflow starts the script (``type = "plugin"``, ``command = "python3"``, ``args =
["enrich.py"]``); the SDK speaks the gRPC protocol of proto/plugin.proto on the Unix
socket siemflow gives it, checks siemflow's per-run token on every call, logs JSON lines
to stderr (siemflow re-logs them under the component id) and exits when siemflow asks
or goes away. Events are plain Python values: dict, list, str, bytes, int, float, bool,
None and ``datetime`` (UTC). See docs/plugin-authoring.md.
"""

from ._server import (
    Delivered,
    Emit,
    Rejected,
    Retry,
    log,
    serve_sink,
    serve_source,
    serve_transform,
)
from ._values import from_value, to_value

__all__ = [
    "Delivered",
    "Emit",
    "Rejected",
    "Retry",
    "from_value",
    "log",
    "serve_sink",
    "serve_source",
    "serve_transform",
    "to_value",
]

__version__ = "0.1.0"
