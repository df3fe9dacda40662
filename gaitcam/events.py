"""What gaitcam tells other programs, as versioned JSON events.

One schema (`SCHEMA`, printed by `gaitcam schema events`) covers every event the app emits, on
stdout (`--headless`) and from the library (`Session.events()`). Every event has `event` (its
type), `time` (UTC, ISO 8601 with milliseconds), `seq` (1, 2, 3 ... per stream, so a consumer
sees a gap), `camera` (the source id) and `v` (the schema version); track events add `track`.
Only `identity` events carry an `identity` key: consumers that look for names find them there
and nowhere else. `summary` keeps the live run's counts under `summary`.

Bump `SCHEMA_VERSION` when a field changes meaning or goes away; adding an optional field does
not need it.
"""
from __future__ import annotations

import itertools
import threading
from datetime import datetime, timezone
from typing import Any

SCHEMA_VERSION = 1

_COMMON = {
    "event": {"type": "string"},
    "time": {"type": "string", "format": "date-time", "description": "UTC, ISO 8601"},
    "seq": {"type": "integer", "minimum": 1, "description": "1, 2, 3 ... within one stream"},
    "camera": {"type": "string", "minLength": 1, "description": "the source: sensor name or camera id"},
    "v": {"const": SCHEMA_VERSION},
}
_TRACK = {"type": "integer", "minimum": 0}
_RATE = {"type": "number", "minimum": 0}
_COUNT = {"type": "integer", "minimum": 0}
_NAME = {"type": "string", "minLength": 1}

# Per type: its own properties and which of them are required (besides the common ones).
_TYPES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "track_started": ({"track": _TRACK}, ["track"]),
    "identity": ({
        "track": _TRACK,
        "identity": {"type": ["string", "null"], "description": "a gallery name, or null: a stranger"},
        "score": {"type": "number", "minimum": 0, "maximum": 1, "description": "0.5 is the calibrated threshold"},
        "threshold": {"type": "number", "description": "the score from which a name is given (0.5: as calibrated)"},
        "margin": {"type": "number", "description": "score minus threshold: how far inside (+) or outside (-)"},
        "nearest": {"type": ["string", "null"], "description": "the closest enrolled person, named or not"},
        "recording": {"type": "string", "description": "the file identified, when not live"},
    }, ["track", "identity", "score", "threshold", "margin"]),
    "track_ended": ({"track": _TRACK, "seconds": _RATE, "windows": _COUNT}, ["track"]),
    "enrolled": ({"name": _NAME, "walks": _COUNT, "windows": _COUNT, "seconds": _RATE}, ["name"]),
    "removed": ({"name": _NAME, "templates": _COUNT}, ["name"]),
    "sensor_status": ({"status": {"enum": ["started", "lost", "restarted", "ended", "stopped"]},
                       "detail": {"type": "string"}}, ["status"]),
    "summary": ({"summary": {
        "type": "object",
        "properties": {k: _COUNT for k in ("frames", "frames_with_pose", "windows", "tracks", "dropped",
                                           "skipped", "errors", "decisions")},
        "required": ["frames", "frames_with_pose", "windows", "tracks", "dropped"],
    }}, ["summary"]),
}
EVENT_TYPES = tuple(_TYPES)


def _variant(name: str) -> dict[str, Any]:
    own, required = _TYPES[name]
    return {
        "type": "object",
        "properties": {**_COMMON, "event": {"const": name}, **own},
        "required": ["event", "time", "seq", "camera", "v", *required],
        "additionalProperties": False,
    }


SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": f"https://gaitcam.invalid/schema/events/v{SCHEMA_VERSION}.json",
    "title": "gaitcam event",
    "description": __doc__.split("\n\n")[1].replace("\n", " "),
    "oneOf": [_variant(name) for name in EVENT_TYPES],
}


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventStream:
    """Numbers and stamps the events of one stream (one camera, one session); thread-safe."""

    def __init__(self, camera: str) -> None:
        if not camera:
            raise ValueError("an event stream needs a camera id")
        self.camera = camera
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def make(self, event: str, **fields: Any) -> dict[str, Any]:
        """An event of type `event` with its fields (None-valued optional fields left out)."""
        if event not in _TYPES:
            raise ValueError(f"unknown event type {event!r} (known: {', '.join(EVENT_TYPES)})")
        own, required = _TYPES[event]
        unknown = set(fields) - set(own)
        if unknown:
            raise ValueError(f"{event}: no field(s) {', '.join(sorted(unknown))}")
        body = {k: v for k, v in fields.items() if v is not None or k in required}
        with self._lock:
            return {"event": event, "time": utc_now(), "seq": next(self._seq), "camera": self.camera,
                    "v": SCHEMA_VERSION, **body}
