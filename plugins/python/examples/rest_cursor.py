"""A source plugin: reads a REST API page by page with a cursor it saves only once
siemflow delivered the page to every sink.

    [sources.api]
    type = "plugin"
    command = "python3"
    args = ["plugins/python/examples/rest_cursor.py"]
    config = { url = "http://127.0.0.1:8080/records", page_size = 500 }

GET <url>?after=<cursor>&limit=<page_size> must answer {"records": [...], "next": "<cursor>"}
(an empty `records` when there is nothing new; the source then waits `poll_interval`
seconds). The cursor is kept in $SIEMFLOW_STATE_DIR/cursor (written atomically), so a
restart — of the plugin or of siemflow, even after a crash — resumes after the last page
that was delivered: a page may come twice, never not at all.
"""

import json
import os
import sys
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
        "url": {"type": "string"},
        "page_size": {"type": "integer", "minimum": 1},
        "poll_interval": {"type": "number", "minimum": 0},
        "timeout": {"type": "number", "minimum": 0},
    },
    "required": ["url"],
    "additionalProperties": False,
}

CURSOR = os.path.join(os.environ.get("SIEMFLOW_STATE_DIR", "."), "cursor")


def load_cursor():
    try:
        with open(CURSOR) as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def save_cursor(cursor):
    """Called by the SDK once a page is delivered, pages in order."""
    tmp = CURSOR + ".tmp"
    with open(tmp, "w") as f:
        f.write(cursor)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, CURSOR)


def read(config, stopping):
    cursor = load_cursor()
    siemflow_plugin.log.info("reading %s after cursor %r", config["url"], cursor)
    while not stopping.is_set():
        query = urllib.parse.urlencode({"after": cursor, "limit": config.get("page_size", 500)})
        try:
            with urllib.request.urlopen(f"{config['url']}?{query}", timeout=config.get("timeout", 30)) as r:
                page = json.loads(r.read())
        except OSError as error:
            siemflow_plugin.log.warning("request failed, trying again: %s", error)
            stopping.wait(config.get("poll_interval", 5))
            continue
        if not page["records"]:
            stopping.wait(config.get("poll_interval", 5))
            continue
        cursor = page["next"]
        # The token handed back on delivery is the cursor after this page.
        yield page["records"], cursor


if __name__ == "__main__":
    siemflow_plugin.serve_source(read, on_ack=save_cursor, schema=SCHEMA, credit=4)
