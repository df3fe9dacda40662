"""`gaitcam schema events`: the JSON Schema every emitted event validates against."""
from __future__ import annotations

import argparse
import json


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of what gaitcam emits",
                       description="`schema events`: the events on stdout (--headless) and from the library, "
                       "one JSON Schema (draft 2020-12) with one variant per event type.")
    p.add_argument("what", choices=("events",))
    p.set_defaults(func=cmd_schema)


def cmd_schema(args: argparse.Namespace) -> int:
    from gaitcam.events import SCHEMA

    print(json.dumps(SCHEMA, indent=2))
    return 0
