"""The events to an MQTT broker (`--mqtt host:port`), topic `gaitcam/<camera>/events`.

A subscriber of the event bus like stdout and the WebSocket: its own bounded queue (a broker
that stalls loses the oldest events, counted, never the pipeline's time), one JSON event per
message, QoS 1 (at least once: consumers dedupe on `seq`). paho-mqtt reconnects by itself
when the broker goes away and comes back.
"""
from __future__ import annotations

import json
import logging
import threading

from gaitcam.errors import GaitcamError
from gaitcam.events import EventBus

log = logging.getLogger(__name__)

QUEUE = 4096  # events waiting for the broker before the oldest are dropped


def parse_address(address: str) -> tuple[str, int]:
    """`host:port` (port default 1883)."""
    host, _, port = address.rpartition(":") if ":" in address else (address, "", "1883")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not host or not 0 < number < 65536:
        raise GaitcamError(f"--mqtt {address!r}: expected HOST:PORT, e.g. 127.0.0.1:1883")
    return host, number


def topic(camera: str) -> str:
    return f"gaitcam/{camera}/events"


class MqttPublisher:
    """Publishes every event of `bus` to the broker at `address`, from its own thread."""

    def __init__(self, bus: EventBus, address: str, connect_timeout: float = 10.0) -> None:
        import paho.mqtt.client as mqtt

        self.host, self.port = parse_address(address)
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"gaitcam-{bus.stream.camera}")
        connected = threading.Event()
        self._client.on_connect = lambda client, userdata, flags, reason, props: connected.set()
        try:
            self._client.connect(self.host, self.port, keepalive=30)
        except OSError as e:
            raise GaitcamError(f"--mqtt {address}: cannot reach the broker ({e.strerror or e})") from None
        self._client.loop_start()
        if not connected.wait(connect_timeout):
            self._client.loop_stop()
            raise GaitcamError(f"--mqtt {address}: the broker did not accept the connection in {connect_timeout:g} s")
        self._last = None  # the newest message handed to paho (QoS 1: acknowledged in order)
        self._sub = bus.subscribe(QUEUE)
        self._thread = threading.Thread(target=self._run, name="gaitcam-mqtt", daemon=True)
        self._thread.start()
        log.info("publishing events to mqtt://%s:%d/%s", self.host, self.port, topic("<camera>"))

    def _run(self) -> None:
        for event in self._sub:  # several sources in one process: each camera's events on its topic
            self._last = self._client.publish(topic(event["camera"]), json.dumps(event), qos=1)

    def close(self, timeout: float = 10.0) -> None:
        """Publish what is queued (the bus closed first, so the summary is in it), then disconnect."""
        self._sub.close()
        self._thread.join(timeout)
        if self._last is not None:
            try:
                self._last.wait_for_publish(timeout)
            except RuntimeError as e:  # the broker went away: what is queued is lost, and said so
                log.warning("mqtt: the last events may not have reached the broker (%s)", e)
        self._client.disconnect()
        self._client.loop_stop()
