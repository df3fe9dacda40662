"""The events' contract: one JSON Schema, events made to it, and the `schema events` command."""
import json

import jsonschema
import pytest

from gaitcam.cli import main
from gaitcam.events import EVENT_TYPES, SCHEMA, SCHEMA_VERSION, EventStream

EXAMPLES = {
    "track_started": {"track": 3},
    "identity": {"track": 3, "identity": "ada", "score": 0.71, "threshold": 0.5, "margin": 0.21, "nearest": "ada"},
    "track_ended": {"track": 3, "seconds": 4.2, "windows": 120},
    "enrolled": {"name": "ada", "walks": 1, "windows": 40, "seconds": 4.0},
    "removed": {"name": "ada", "templates": 2},
    "link": {"from_camera": "hall-1", "from_track": 3, "to_camera": "hall-2", "to_track": 7, "site_id": 17,
             "score": 0.82, "threshold": 0.5, "linked": True, "basis": "gait", "transit": 6.5},
    "sensor_status": {"status": "lost", "detail": "kinect: no frames for 2 s"},
    "summary": {"summary": {"frames": 10, "frames_with_pose": 9, "windows": 3, "tracks": 1, "dropped": 0}},
}


def test_the_schema_is_valid_and_every_event_type_is_made_to_it():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert set(EXAMPLES) == set(EVENT_TYPES)
    stream = EventStream("hall-1")
    made = [stream.make(kind, **fields) for kind, fields in EXAMPLES.items()]
    for event in made:
        jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(event)
        assert event["camera"] == "hall-1" and event["v"] == SCHEMA_VERSION and event["time"].endswith("Z")
    assert [e["seq"] for e in made] == list(range(1, len(made) + 1))


def test_events_that_break_the_contract_are_refused():
    stream = EventStream("hall-1")
    with pytest.raises(ValueError, match="unknown event type"):
        stream.make("hello")
    with pytest.raises(ValueError, match="no field"):
        stream.make("track_started", track=1, identity="ada")  # names only travel in identity events
    good = stream.make("identity", **EXAMPLES["identity"])
    for broken in ({k: v for k, v in good.items() if k != "score"},  # a decision without its score
                   {**good, "seq": 0},
                   {**stream.make("track_ended", track=1), "identity": "ada"},
                   {**good, "event": "identity_v2"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, SCHEMA)
    assert stream.make("identity", **{**EXAMPLES["identity"], "identity": None})["identity"] is None  # strangers


def test_schema_events_prints_the_schema(capsys):
    assert main(["schema", "events"]) == 0
    assert json.loads(capsys.readouterr().out) == SCHEMA


def test_a_slow_subscriber_loses_its_oldest_events_counted_and_never_blocks_the_publisher():
    import time

    from gaitcam.events import EventBus

    bus = EventBus("hall-1")
    slow, fast = bus.subscribe(maxsize=3), bus.subscribe(maxsize=100)
    began = time.monotonic()
    for track in range(10):
        bus.publish("track_started", track=track)
    assert time.monotonic() - began < 1.0  # publishing never waits for a reader
    assert [slow.get(0)["track"] for _ in range(3)] == [7, 8, 9] and slow.get(0) is None
    assert slow.dropped == 7 and bus.dropped == 7 and fast.dropped == 0
    assert [e["seq"] for e in iter(lambda: fast.get(0), None)] == list(range(1, 11))
    newest = bus.subscribe(maxsize=1, count_drops=False)  # wants only the latest: not a reader falling behind
    bus.publish("track_started", track=10)
    bus.publish("track_ended", track=10)
    assert newest.get(0)["event"] == "track_ended" and newest.dropped == 1 and bus.dropped == 7  # not counted
    bus.close()
    assert slow.closed and [e["seq"] for e in slow] == [11, 12] and bus.subscribers == 0  # drained, then ends
