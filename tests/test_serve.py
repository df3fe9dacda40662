"""`serve` as a client sees it: a real uvicorn server on a free loopback port, a token, REST,
WebSocket and Server-Sent Events, Prometheus metrics, a clean SIGTERM. Request loops are
bounded in count and time."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from conftest import start_serve

from gaitcam.config import DEMO_DIR
from gaitcam.events import SCHEMA

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-" + uuid.uuid4().hex


def _request(url: str, method: str = "GET", token: str | None = TOKEN, body: bytes | None = None,
             content_type: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _upload(url: str, path: Path, name: str | None = None, token: str | None = TOKEN) -> tuple[int, bytes]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"recording\"; filename=\"{name or path.name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return _request(url, "POST", token, body, f"multipart/form-data; boundary={boundary}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    (tmp / "token").write_text(TOKEN + "\n")
    base, child = start_serve(tmp, "--token-file", str(tmp / "token"), token=TOKEN)
    yield base, child, tmp
    if child.poll() is None:
        child.kill()
        child.wait()


def test_every_request_without_the_token_is_401(server):
    base, _, _ = server
    for path in ("/healthz", "/api/v1/gallery", "/metrics", "/openapi.json", "/docs"):
        assert _request(base + path, token=None)[0] == 401
        assert _request(base + path, token="wrong")[0] == 401
    with pytest.raises(InvalidStatus) as e:
        connect(f"ws://{base[7:]}/api/v1/events", open_timeout=10).close()
    assert e.value.response.status_code == 401


def test_the_api_is_described_and_the_gallery_listed(server):
    base, _, _ = server
    status, body = _request(f"{base}/openapi.json")
    assert status == 200 and "/api/v1/gallery" in json.loads(body)["paths"]
    status, body = _request(f"{base}/docs")
    assert status == 200 and b"swagger" in body.lower()
    people = json.loads(_request(f"{base}/api/v1/gallery")[1])
    assert {p["name"] for p in people} == {"Ada", "Ben", "Chloe", "Dev"}  # the demo's gallery


def test_the_websocket_and_sse_yield_schema_valid_live_events(server):
    base, _, _ = server
    with connect(f"ws://{base[7:]}/api/v1/events", additional_headers={"Authorization": f"Bearer {TOKEN}"},
                 open_timeout=10) as ws:
        events = [json.loads(ws.recv(timeout=20)) for _ in range(4)]
    for e in events:
        jsonschema.validate(e, SCHEMA)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events) and events[0]["camera"] == "demo"
    req = urllib.request.Request(f"{base}/api/v1/events/stream", headers={"Authorization": f"Bearer {TOKEN}"})
    got = []
    with urllib.request.urlopen(req, timeout=20) as r:
        for _ in range(50):
            line = r.readline().decode().strip()
            if line.startswith("data: "):
                got.append(json.loads(line[6:]))
                if len(got) == 2:
                    break
    assert len(got) == 2 and all(jsonschema.validate(e, SCHEMA) is None for e in got)


def test_metrics_parse_and_are_all_gaitcam(server):
    base, _, _ = server
    status, body = _request(f"{base}/metrics")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert status == 200 and families and all(name.startswith("gaitcam_") for name in families)
    assert {"gaitcam_fps", "gaitcam_queue_depth", "gaitcam_encode_latency_seconds", "gaitcam_decisions",
            "gaitcam_dropped", "gaitcam_events_dropped", "gaitcam_stride", "gaitcam_lag_seconds",
            "gaitcam_falling_behind", "gaitcam_behind"} <= set(families)
    assert families["gaitcam_frames"].samples[0].value > 0
    assert families["gaitcam_stride"].samples[0].value >= 1 and families["gaitcam_lag_seconds"].samples[0].value >= 0


def test_enrol_rename_remove_and_identify_uploads(server):
    base, _, tmp = server
    status, body = _upload(f"{base}/api/v1/gallery/Zed", DEMO_DIR / "Dev.gaitrec")
    assert status == 201 and json.loads(body)["windows"] > 0
    kept = list((tmp / "recordings" / "uploads").iterdir())
    assert len(kept) == 1 and kept[0].stat().st_mode & 0o777 == 0o600  # the gallery refers to it: kept, owner-only
    assert _request(f"{base}/api/v1/gallery/Zed", "PATCH", body=b'{"name": "Zoe"}',
                    content_type="application/json")[0] == 200
    names = {p["name"] for p in json.loads(_request(f"{base}/api/v1/gallery")[1])}
    assert "Zoe" in names and "Zed" not in names
    status, body = _upload(f"{base}/api/v1/identify", DEMO_DIR / "Dev.gaitrec")
    (verdict,) = json.loads(body)
    assert status == 200 and verdict["identity"] is None  # Dev and Zoe hold the same walk: no one name fits
    status, body = _upload(f"{base}/api/v1/identify", DEMO_DIR / "Ada.gaitrec")
    assert status == 200 and json.loads(body)[0]["identity"] == "Ada"
    status, body = _request(f"{base}/api/v1/gallery/Zoe", "DELETE")
    assert status == 200 and json.loads(body)["recordings_deleted"] == 1
    assert not kept[0].exists()  # real deletion: the upload went with the person
    assert _request(f"{base}/api/v1/gallery/Zoe", "DELETE")[0] == 404


def test_the_person_of_a_live_track_is_enrolled_from_their_last_seconds(server):
    base, _, tmp = server
    said = []
    for _ in range(60):  # up to 30 s: a demo walker crosses the view in about 2.5 s
        for t in json.loads(_request(f"{base}/api/v1/tracks")[1]):
            status, body = _request(f"{base}/api/v1/gallery/Walker/live?track={t['track']}", "POST")
            said.append((status, json.loads(body)))
            if status == 201:
                break
        if said and said[-1][0] == 201:
            break
        time.sleep(0.5)
    status, enrolled = said[-1]
    assert status == 201 and enrolled["windows"] >= 20, said[-3:]
    assert all(s == 400 and "windows" in b["error"] for s, b in said[:-1])  # too little walking yet: said so
    assert any(p.name.startswith("live-demo-track") for p in (tmp / "recordings" / "uploads").iterdir())
    assert _request(f"{base}/api/v1/gallery/Walker", "DELETE")[0] == 200
    assert _request(f"{base}/api/v1/gallery/Nobody/live?track=99999", "POST")[0] == 400


def test_bad_requests_get_json_errors_and_change_nothing(server):
    base, _, tmp = server
    before = _request(f"{base}/api/v1/gallery")[1]
    junk = tmp / "junk.gaitrec"
    junk.write_bytes(b"this is not a recording")
    status, body = _upload(f"{base}/api/v1/gallery/Junk", junk)
    assert status == 400 and "error" in json.loads(body)
    assert _request(f"{base}/api/v1/gallery/Junk", "POST")[0] == 422  # no file at all
    assert _request(f"{base}/api/v1/gallery/Ada", "PATCH", body=b"{not json", content_type="application/json")[0] == 422
    assert _request(f"{base}/api/v1/gallery/Nobody", "PATCH", body=b'{"name": "X"}',
                    content_type="application/json")[0] == 404
    assert _request(f"{base}/api/v1/gallery")[1] == before
    assert not any(p.name.startswith("junk") for p in (tmp / "recordings" / "uploads").glob("*"))


def test_sigterm_stops_with_a_true_summary_and_exit_0(server):
    base, child, _ = server
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["event"] == "summary" and summary["summary"]["frames"] > 0


def test_beyond_loopback_without_a_token_it_refuses_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "GAITCAM_TOKEN"}
    out = subprocess.run([sys.executable, str(ROOT / "main.py"), "serve", "--host", "0.0.0.0", "--port", "1"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "needs a token" in out.stderr


def test_tokens_are_checked_as_bearer_or_as_a_browser_s_basic_password(tmp_path):
    import base64

    from gaitcam.errors import GaitcamError
    from gaitcam.service.auth import authorised, check_bind, is_loopback, load_token

    basic = "Basic " + base64.b64encode(b"anyone:s3cret").decode()
    assert authorised("Bearer s3cret", "s3cret") and authorised(basic, "s3cret") and authorised(None, None)
    for bad in (None, "", "Bearer", "Bearer s3cre", "bearer x", "Basic !!", "Basic " + base64.b64encode(b"s3cret").decode(),
                "Token s3cret"):
        assert not authorised(bad, "s3cret"), bad
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")
    check_bind("127.0.0.1", None)
    with pytest.raises(GaitcamError, match="needs a token"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "s3cret")
    (tmp_path / "token").write_text("\n  s3cret \n")
    assert load_token(tmp_path / "token") == "s3cret"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(GaitcamError, match="empty"):
        load_token(tmp_path / "empty")
