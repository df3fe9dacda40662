"""The HTTP service: a FastAPI app over one session and, optionally, its live run.

    GET    /healthz                       liveness and what runs
    GET    /api/v1/gallery                enrolled people
    POST   /api/v1/gallery/{name}         enrol from an uploaded recording (multipart field `recording`)
    POST   /api/v1/gallery/{name}/live    enrol the person of a live track (?track=N), from their last 30 s
    PATCH  /api/v1/gallery/{name}         rename ({"name": NEW})
    DELETE /api/v1/gallery/{name}         remove for good
    POST   /api/v1/identify               identify an uploaded recording
    GET    /api/v1/tracks                 the live tracks in view now, with their verdicts
    WS     /api/v1/events                 live events, one JSON event a message
    GET    /api/v1/events/stream          the same as Server-Sent Events
    GET    /metrics                       Prometheus text
    GET    /docs, /openapi.json           the API, described
    GET    /                              a web page: who is in view, the gallery, enrol/rename/remove

With a token set, every request must carry `Authorization: Bearer TOKEN` (or, from a browser,
Basic with the token as password), else 401. Errors are
JSON (`{"error": ...}`), never a traceback. Event subscribers get bounded queues: one that
reads slowly loses its oldest events (counted in `gaitcam_events_dropped`), never the pipeline's time.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from fastapi import FastAPI, File, Query, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from gaitcam import __version__
from gaitcam.errors import GaitcamError
from gaitcam.recording.formats import FORMATS, read_recording
from gaitcam.service.auth import CHALLENGE, authorised
from gaitcam.service.metrics import registry
from gaitcam.session import LiveRun, Session

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE = 256  # events a slow client may fall behind before its oldest are dropped
MAX_UPLOAD = 64 * 1024 * 1024  # bytes: a recording larger than this is refused
SUFFIXES = tuple(s for f in FORMATS for s in f.suffixes)


class Rename(BaseModel):
    name: str = Field(min_length=1, description="the new name")


class Person(BaseModel):
    name: str
    recordings: int
    templates: int
    sensors: list[str]
    enrolled: str


class Enrolled(BaseModel):
    name: str
    track: int
    windows: int
    seconds: float
    warnings: list[str]


class Verdict(BaseModel):
    track: int
    identity: str | None
    score: float | None
    nearest: str | None
    windows: int
    failure: str | None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(session: Session, run: LiveRun | None = None, token: str | None = None,
               uploads: Path | None = None) -> FastAPI:
    """The service over `session` (and `run`, when live). `uploads`: where enrolment uploads are
    kept (the gallery refers to its recordings; default: a folder beside the gallery)."""
    app = FastAPI(title="gaitcam", version=__version__,
                  description="Person re-identification by gait: gallery, identification, live events.")
    metrics = registry(session, run)
    keep = uploads or Path(session.gallery.path).parent / "uploads"

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if not authorised(request.headers.get("authorization"), token):
            denied = _error(401, "missing or wrong bearer token")
            denied.headers["WWW-Authenticate"] = CHALLENGE
            return denied
        return await call_next(request)

    @app.exception_handler(GaitcamError)
    async def gaitcam_error(request: Request, e: GaitcamError) -> JSONResponse:
        return _error(404 if str(e).startswith("no one named") else 400, str(e))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid request", "detail": json.loads(json.dumps(e.errors(), default=str))},
                            status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, f"internal error ({type(e).__name__})")

    page = (Path(__file__).parent / "page.html").read_text()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        """The web page: the tracks in view with their names, the gallery, enrol/rename/remove."""
        return HTMLResponse(page)

    @app.get("/healthz")
    def healthz() -> dict:
        live = run is not None and run.error is None and not run.pipeline.stopping
        return {"status": "ok", "version": __version__, "people": len(session.index), "live": live,
                "camera": session.bus.stream.camera}

    @app.get("/api/v1/gallery", response_model=list[Person])
    def gallery() -> list[Person]:
        return [Person(name=p.name, recordings=p.n_recordings, templates=p.n_templates, sensors=list(p.sensors),
                       enrolled=p.created.isoformat()) for p in session.gallery.people()]

    def _saved(upload: UploadFile, folder: Path) -> Path:
        """The upload as an owner-only file in `folder`, named with its format's suffix, once it
        has been read as a recording (anything else is refused before it is kept)."""
        suffix = "".join(Path(upload.filename or "").suffixes[-2:]).lower()
        if not any(suffix.endswith(s) for s in SUFFIXES):
            raise GaitcamError(f"{upload.filename!r} is not a recording gaitcam reads ({', '.join(SUFFIXES)})")
        data = upload.file.read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            raise GaitcamError(f"{upload.filename!r} is larger than {MAX_UPLOAD // 2**20} MiB")
        with tempfile.TemporaryDirectory(prefix="gaitcam-upload-") as tmp:
            trial = Path(tmp) / f"upload{suffix}"
            trial.write_bytes(data)
            read_recording(trial)  # FormatError (a GaitcamError) for anything that is not a recording
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = folder / f"{uuid.uuid4().hex}{suffix}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return path

    @app.post("/api/v1/gallery/{name}", status_code=201, response_model=Enrolled)
    def enroll(name: str, recording: UploadFile = File(...), track: int | None = Query(None),
               replace: bool = Query(False)) -> Enrolled:
        path = _saved(recording, keep)
        try:
            r = session.enroll(name, path, track, replace)
        except BaseException:
            path.unlink(missing_ok=True)  # refused: nothing of it is kept
            raise
        return Enrolled(name=r.name, track=r.track, windows=r.windows, seconds=r.seconds, warnings=r.warnings)

    @app.post("/api/v1/gallery/{name}/live", status_code=201, response_model=Enrolled)
    def enroll_live(name: str, track: int = Query(..., description="a track id from /api/v1/tracks"),
                    replace: bool = Query(False)) -> Enrolled:
        """Enrol the person of a live track from their last 30 s in view (400, with the reason,
        while they have not walked enough yet)."""
        if run is None:
            raise GaitcamError("no live source: serve runs with --no-live")
        r = run.enroll_track(name, track, keep, replace)
        return Enrolled(name=r.name, track=r.track, windows=r.windows, seconds=r.seconds, warnings=r.warnings)

    @app.patch("/api/v1/gallery/{name}")
    def rename(name: str, body: Rename) -> dict:
        session.rename(name, body.name)
        return {"renamed": name, "to": body.name}

    @app.delete("/api/v1/gallery/{name}")
    def remove(name: str, delete_recordings: bool = Query(False, description="also delete recordings of theirs "
                                                                                  "the service did not receive")) -> dict:
        """Remove for good: templates scrubbed from the gallery, and the recordings uploaded for
        this person deleted (other recordings only they appear in with `delete_recordings`)."""
        own = session.remove(name, delete_recordings)
        deleted = []
        for path in own:
            if delete_recordings or path.resolve().parent == keep.resolve():
                path.unlink(missing_ok=True)
                deleted.append(path.name)
        return {"removed": name, "recordings_deleted": len(deleted)}

    @app.post("/api/v1/identify", response_model=list[Verdict])
    def identify(recording: UploadFile = File(...)) -> list[Verdict]:
        with tempfile.TemporaryDirectory(prefix="gaitcam-identify-") as tmp:
            path = _saved(recording, Path(tmp))
            return [Verdict(**d) for d in session.identify(path)]

    @app.get("/api/v1/tracks")
    def tracks() -> list[dict]:
        return [] if run is None else run.tracks()

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/api/v1/events")
    async def events(ws: WebSocket) -> None:
        if not authorised(ws.headers.get("authorization"), token):
            await ws.send_denial_response(_error(401, "missing or wrong bearer token"))
            return
        await ws.accept()
        sub = session.bus.subscribe(SUBSCRIBER_QUEUE)
        try:
            while not sub.closed:
                event = await asyncio.to_thread(sub.get, 0.5)
                if event is not None:
                    await ws.send_text(json.dumps(event))
        except (WebSocketDisconnect, RuntimeError):
            pass  # the client went away
        finally:
            sub.close()

    @app.get("/api/v1/events/stream")
    def event_stream() -> StreamingResponse:
        sub = session.bus.subscribe(SUBSCRIBER_QUEUE)

        def lines() -> Iterator[str]:
            try:
                while not sub.closed:
                    event = sub.get(timeout=1.0)
                    yield f"data: {json.dumps(event)}\n\n" if event is not None else ": keep-alive\n\n"
            finally:
                sub.close()

        return StreamingResponse(lines(), media_type="text/event-stream")

    return app
