"""A transform plugin: adds what an in-house HTTP API knows about each event's user.

    [transforms.owner]
    type = "plugin"
    inputs = ["audit"]
    command = "python3"
    args = ["plugins/python/examples/enrich_http.py"]
    config = { url = "http://127.0.0.1:8080/users/", field = "UserId", target = "owner" }

For each event, GET <url><value of `field`> must answer a JSON object, which is put under
`target`. Answers are cached per value. An event whose lookup fails (HTTP error, timeout,
not JSON) goes to `<id>.dropped` with the reason; an event without the field passes
unchanged.
"""

import json
import os
import sys
import threading
import urllib.parse
import urllib.request

try:
    import siemflow_plugin
except ImportError:  # run from a checkout: the SDK sits beside the examples
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import siemflow_plugin

SCHEMA = {
    "type": "object",
    "properties": {
        "url": {"type": "string", "description": "base URL; the field's value is appended"},
        "field": {"type": "string", "description": "the event field to look up (default UserId)"},
        "target": {"type": "string", "description": "where the answer goes (default enrichment)"},
        "timeout": {"type": "number", "minimum": 0, "description": "seconds per request (default 5)"},
    },
    "required": ["url"],
    "additionalProperties": False,
}

_cache = {}
_lock = threading.Lock()


def lookup(config, key):
    with _lock:
        if key in _cache:
            return _cache[key]
    url = config["url"] + urllib.parse.quote(str(key), safe="")
    with urllib.request.urlopen(url, timeout=config.get("timeout", 5)) as response:
        answer = json.loads(response.read())
    with _lock:
        _cache[key] = answer
    return answer


def enrich(event, config):
    key = event.get(config.get("field", "UserId"))
    if key is None:
        return event
    event[config.get("target", "enrichment")] = lookup(config, key)
    return event


if __name__ == "__main__":
    # Lookups wait on the network: eight at a time, the batch's order kept.
    siemflow_plugin.serve_transform(enrich, schema=SCHEMA, threads=8)
