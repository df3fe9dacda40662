"""`gaitcam serve`: the session behind HTTP (FastAPI): REST for the gallery and identification,
live events over WebSocket and Server-Sent Events, Prometheus metrics. No recognition logic
lives here; every call goes to `gaitcam.session`."""
