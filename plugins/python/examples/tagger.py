"""A transform plugin: adds `tagged = true` (and `config.tag`, if set, as `tag`) to every
event — the Python twin of examples/plugin_tagger.rs, which the bench compares with the
same step compiled in (`remap`).

    [transforms.tag]
    type = "plugin"
    inputs = ["audit"]
    command = ".venv-test/bin/python"
    args = ["plugins/python/examples/tagger.py"]
    config = { tag = "m365" }
"""

import os
import sys

try:
    import siemflow_plugin
except ImportError:  # run from a checkout: the SDK sits beside the examples
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import siemflow_plugin

SCHEMA = {
    "type": "object",
    "properties": {"tag": {"type": "string", "description": "the label to add as `tag`"}},
    "additionalProperties": False,
}


def tag(event, config):
    if not isinstance(event, dict):
        raise ValueError("not an object")
    event["tagged"] = True
    if "tag" in config:
        event["tag"] = config["tag"]
    return event


if __name__ == "__main__":
    siemflow_plugin.serve_transform(tag, schema=SCHEMA)
