"""What gaitcam tells other programs, as versioned JSON events.

One schema (`SCHEMA`, printed by `gaitcam schema events`) covers every event the app emits, on
stdout (`--headless`) and from the library (`Session.events()`). Every event has `event` (its
type), `time` (UTC, ISO 8601 with milliseconds), `seq` (1, 2, 3 ... per stream, so a consumer
sees a gap), `camera` (the source id) and `v` (the schema version); track events add `track`.
Only `identity` events carry an `identity` key: consumers that look for names find them there
and nowhere else. `summary` keeps the live run's counts under `summary`. `link` events come from
the cross-camera linker (`identity.handoff`), whose stream's `camera` is the site's id: a track
that started on `to_camera` is, or is not, the person of a track that ended on `from_camera`.

Bump `SCHEMA_VERSION` when a field changes meaning or goes away; adding an optional field does
not need it.
"""
from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Iterator
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
    "link": ({
        "from_camera": {"type": ["string", "null"], "description": "where the candidate track ended; null: "
                        "no track ended within the transit window"},
        "from_track": {"type": ["integer", "null"], "minimum": 0},
        "to_camera": _NAME,
        "to_track": _TRACK,
        "site_id": {"type": "integer", "minimum": 1, "description": "the site-wide person id the started track "
                    "now has: the candidate's when linked, else a new one"},
        "score": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
                  "description": "how alike the two tracks are (1: identical); null: no candidate"},
        "threshold": {"type": "number", "description": "the score from which tracks are linked"},
        "linked": {"type": "boolean"},
        "basis": {"enum": ["gait", "identity"], "description": "identity: both tracks were named by the "
                  "gallery, and the names decided; gait: their descriptors were compared"},
        "transit": {"type": "number", "description": "seconds from the candidate's end to this track's start"},
    }, ["from_camera", "from_track", "to_camera", "to_track", "site_id", "score", "threshold", "linked"]),
    "sensor_status": ({"status": {"enum": ["started", "lost", "restarted", "ended", "stopped"]},
                       "detail": {"type": "string"}}, ["status"]),
    "summary": ({"summary": {
        "type": "object",
        "properties": {**{k: _COUNT for k in ("frames", "frames_with_pose", "windows", "tracks", "dropped",
                                              "skipped", "errors", "decisions")},
                       "stride": {"type": "integer", "minimum": 1, "description": "frames between windows, at the end"},
                       "stride_mean": {**_RATE, "description": "the stride, mean over the frames (it adapts to load)"},
                       "lag_ms": {**_RATE, "description": "frame read -> window encoded, p95 of the last 0.5 s"},
                       "behind": {**_COUNT, "description": "times even the widest stride fell behind"}},
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

    def make(self, event: str, camera: str | None = None, **fields: Any) -> dict[str, Any]:
        """An event of type `event` with its fields (None-valued optional fields left out), from
        `camera` (default: the stream's; several cameras of one process share its numbering)."""
        if event not in _TYPES:
            raise ValueError(f"unknown event type {event!r} (known: {', '.join(EVENT_TYPES)})")
        own, required = _TYPES[event]
        unknown = set(fields) - set(own)
        if unknown:
            raise ValueError(f"{event}: no field(s) {', '.join(sorted(unknown))}")
        body = {k: v for k, v in fields.items() if v is not None or k in required}
        with self._lock:
            return {"event": event, "time": utc_now(), "seq": next(self._seq), "camera": camera or self.camera,
                    "v": SCHEMA_VERSION, **body}


class Subscription:
    """One consumer's bounded queue of events. When the consumer falls behind, the oldest
    events are dropped (and counted), so a slow reader never stalls the pipeline."""

    def __init__(self, bus: EventBus, maxsize: int, count_drops: bool = True) -> None:
        self._bus = bus
        self._count_drops = count_drops
        self._items: deque[dict[str, Any]] = deque(maxlen=maxsize)
        self._ready = threading.Condition()
        self.dropped = 0
        self.closed = False

    def put(self, event: dict[str, Any]) -> None:
        with self._ready:
            if len(self._items) == self._items.maxlen:
                self.dropped += 1
                if self._count_drops:
                    self._bus.count_drop()
            self._items.append(event)
            self._ready.notify()

    def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next event, or None after `timeout` seconds (or once closed and drained)."""
        with self._ready:
            if not self._items and not self.closed:
                self._ready.wait(timeout)
            return self._items.popleft() if self._items else None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Events until the subscription is closed (blocks between them)."""
        while not (self.closed and not self._items):
            event = self.get(timeout=0.5)
            if event is not None:
                yield event

    def close(self) -> None:
        self._bus.unsubscribe(self)
        with self._ready:
            self.closed = True
            self._ready.notify_all()


class EventBus:
    """One stream of events (one camera) and its subscribers: stdout, WebSocket clients, MQTT,
    a library session. `publish` numbers and stamps an event and hands it to every subscriber."""

    def __init__(self, camera: str) -> None:
        self.stream = EventStream(camera)
        self._subscribers: list[Subscription] = []
        self._lock = threading.Lock()
        self.published = 0
        self.dropped = 0  # events dropped, over all subscribers, because one fell behind

    def subscribe(self, maxsize: int = 1024, count_drops: bool = True) -> Subscription:
        """A new consumer's queue of at most `maxsize` events; `count_drops` off for one that
        only wants the newest (maxsize 1), whose drops are no consumer falling behind."""
        sub = Subscription(self, maxsize, count_drops)
        with self._lock:
            self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    def count_drop(self) -> None:
        with self._lock:
            self.dropped += 1

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, event: str, camera: str | None = None, **fields: Any) -> dict[str, Any]:
        """Number, stamp and hand on an event of `camera` (default: the bus's)."""
        made = self.stream.make(event, camera, **fields)
        with self._lock:
            self.published += 1
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.put(made)
        return made

    def close(self) -> None:
        """End every subscription (their iterators stop once drained)."""
        for sub in list(self._subscribers):
            sub.close()
