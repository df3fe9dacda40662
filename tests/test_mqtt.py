"""--mqtt: a real mosquitto broker (Debian's package) on a free loopback port receives exactly
the events the run prints on stdout."""
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from conftest import free_port, start_serve

from gaitcam.cli import main
from gaitcam.errors import GaitcamError
from gaitcam.mqtt import parse_address

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


@pytest.fixture
def broker(tmp_path):
    if MOSQUITTO is None:
        pytest.skip("needs mosquitto (apt-get install mosquitto; .ci/run installs it)")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(100):  # up to 10 s
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"mosquitto did not start: {proc.stderr.read().decode()}")
    yield port
    proc.terminate()
    proc.wait(timeout=10)


def test_the_broker_gets_the_same_events_as_stdout(broker, capsys):
    got = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda client, userdata, msg: got.append((msg.topic, json.loads(msg.payload)))
    sub.connect("127.0.0.1", broker)
    sub.subscribe("gaitcam/#", qos=1)
    sub.loop_start()
    try:
        time.sleep(0.5)  # the subscription is in place before the first event
        assert main(["--headless", "--duration", "5", "--camera", "hall-1", "--mqtt", f"127.0.0.1:{broker}"]) == 0
        printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        for _ in range(100):  # up to 10 s for the last messages to arrive
            if len(got) >= len(printed):
                break
            time.sleep(0.1)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert printed[-1]["event"] == "summary" and any(e["event"] == "identity" for e in printed)
    assert {t for t, _ in got} == {"gaitcam/hall-1/events"}
    assert sorted((e for _, e in got), key=lambda e: e["seq"]) == printed  # QoS 1 may repeat; none here


def test_an_unreachable_broker_is_said_before_the_run(capsys):
    port = free_port()  # nothing listens there
    assert main(["--headless", "--duration", "2", "--mqtt", f"127.0.0.1:{port}"]) == 2
    assert "cannot reach the broker" in capsys.readouterr().err


def test_broker_addresses():
    assert parse_address("broker.local:1884") == ("broker.local", 1884)
    assert parse_address("10.0.0.5") == ("10.0.0.5", 1883)
    for bad in ("host:port", ":1883", "host:0", "host:70000"):
        with pytest.raises(GaitcamError, match="HOST:PORT"):
            parse_address(bad)


def test_serve_publishes_to_the_broker_what_its_websocket_sends(broker, tmp_path):
    import signal

    from websockets.sync.client import connect

    got = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda client, userdata, msg: got.append(json.loads(msg.payload))
    sub.connect("127.0.0.1", broker)
    sub.subscribe("gaitcam/demo/events", qos=1)
    sub.loop_start()
    base, child = start_serve(tmp_path, "--mqtt", f"127.0.0.1:{broker}")
    try:
        with connect(base.replace("http", "ws") + "/api/v1/events", open_timeout=5) as ws:
            sent = [json.loads(ws.recv(timeout=20)) for _ in range(3)]
        for _ in range(50):
            if {e["seq"] for e in sent} <= {e["seq"] for e in got}:
                break
            time.sleep(0.1)
        by_seq = {e["seq"]: e for e in got}
        assert all(by_seq.get(e["seq"]) == e for e in sent)
    finally:
        child.send_signal(signal.SIGTERM)
        child.communicate(timeout=60)
        sub.loop_stop()
        sub.disconnect()
    assert child.returncode == 0
