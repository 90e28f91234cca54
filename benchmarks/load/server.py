"""The system under load: a fresh PostgreSQL database, gunicorn in production mode, and faults."""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


class HarnessError(RuntimeError):
    """The harness could not set up or drive the system under load."""


def database_recreate(url: str) -> None:
    """Drop and create the database named in `url` (never anything else on the server)."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name or not name.replace("_", "").isalnum():
        raise HarnessError(f"--database-url must name a plain database (letters, _): {url}")
    admin = urlunsplit(parts._replace(path="/postgres"))
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as error:
        raise HarnessError(f"cannot reach PostgreSQL at {admin}: {error}") from error


def server_environment(*, database_url: str, workdir: Path) -> dict[str, str]:
    """Production settings over plain HTTP on loopback, media served before Django."""
    return {
        # config.settings plus the minimal answer view (benchmarks/load/minimal.py) at its own
        # URL: same middleware, database settings and gunicorn as the pages it is compared with.
        "DJANGO_SETTINGS_MODULE": "benchmarks.load.settings",
        "DATABASE_URL": database_url,
        "DJANGO_PRODUCTION": "1",
        # Production refuses to start without both keys; random ones for each run.
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "FVR_PSEUDONYM_KEY": secrets.token_urlsafe(50),
        # Loopback has no TLS: no HTTPS redirect or Secure cookies (a TLS proxy does this part).
        "DJANGO_SECURE": "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_CONN_MAX_AGE": "60",
        "FVR_VAR_DIR": str(workdir),
        "DJANGO_MEDIA_ROOT": str(workdir / "media"),
        "DJANGO_STATIC_ROOT": str(workdir / "static"),
        "FVR_SERVE_MEDIA_WHITENOISE": "1",
        "FVR_LOG_LEVEL": "ERROR",
        # Everyone arrives from 127.0.0.1 here: the per-address entry limit must not bite.
        "FVR_ENTRY_RATE": os.environ.get("FVR_LOAD_ENTRY_RATE", "1000000/min"),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_stop(process: subprocess.Popen | None, graceful: int, *, timeout: float) -> None:
    """Send a server its graceful-stop signal and wait; kill it if it is still there after
    ``timeout`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(graceful)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Gunicorn:
    """One gunicorn master with its workers, started and stopped by the harness."""

    env: dict[str, str]
    workdir: Path
    port: int
    workers: int = 4
    threads: int = 4
    worker_class: str = "gthread"
    name: str = "gunicorn"  # its logs: NAME.log, and NAME-access.log with access_log
    access_log: bool = False  # log each request's method, path (no query string) and status
    process: subprocess.Popen | None = None
    events: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def access_log_path(self) -> Path:
        return self.workdir / f"{self.name}-access.log"

    def participant_requests(self) -> int:
        """Participants' requests in its access log (0 without one): pages and the minimal
        view, not the harness's own probes (readiness, who serves images), which reach every
        server directly."""
        path = self.access_log_path
        lines = path.read_text().splitlines() if path.exists() else []
        return sum(line.split(" ")[1].startswith(("/s/", "/__load/")) for line in lines)

    def start(self, *, timeout: float = 60) -> float:
        """Start gunicorn and wait until it answers; return the seconds that took."""
        started = time.monotonic()
        self.process = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "config.wsgi:application",
                f"--bind=127.0.0.1:{self.port}",
                f"--workers={self.workers}",
                f"--worker-class={self.worker_class}",
                f"--threads={self.threads}",
                "--timeout=60",
                "--graceful-timeout=30",
                "--backlog=2048",
                # Longer than any think time, as a proxy's keep-alive would be: a connection closed
                # by the server just as the client reuses it is a client-side error, not a fault.
                "--keep-alive=75",
                f"--error-logfile={self.log}",
                *(
                    # Paths only (%(U)s): an arrival's query string carries Prolific IDs.
                    [
                        f"--access-logfile={self.access_log_path}",
                        "--access-logformat=%(m)s %(U)s %(s)s",
                    ]
                    if self.access_log
                    else []
                ),
            ],
            cwd=REPO,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.wait_ready(timeout=timeout)
        return time.monotonic() - started

    def wait_ready(self, *, timeout: float) -> float:
        """Poll until a page is served by a worker; return the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process is not None and self.process.poll() is not None:
                raise HarnessError(
                    f"gunicorn exited with {self.process.returncode}; see {self.log}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/schema/", timeout=5):
                    return time.monotonic() - started
            except urllib.error.HTTPError as error:
                if error.code < 500:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.1)
        raise HarnessError(f"gunicorn did not answer within {timeout:.0f} s")

    def workers_pids(self) -> list[int]:
        return [child.pid for child in psutil.Process(self.process.pid).children()]

    def stop(self) -> None:
        """Graceful stop (SIGTERM: in-flight requests finish), then wait for the master."""
        process_stop(self.process, signal.SIGTERM, timeout=45)

    # --- faults -----------------------------------------------------------------------------

    def hup(self) -> float:
        """Reload: new workers start, old ones finish their requests and exit."""
        self.process.send_signal(signal.SIGHUP)
        return self.wait_ready(timeout=60)

    def kill_worker(self) -> float:
        """SIGKILL one worker mid-request; the master starts a replacement."""
        pids = self.workers_pids()
        if not pids:
            raise HarnessError("gunicorn has no workers to kill")
        os.kill(pids[0], signal.SIGKILL)
        return self.wait_ready(timeout=60)

    def restart(self) -> float:
        """Full application restart: stop gunicorn, start it again on the same port."""
        started = time.monotonic()
        self.stop()
        self.start()
        return time.monotonic() - started


def postgres_restart(cluster: str) -> float:
    """PostgreSQL fast restart (open connections are cut); return the seconds it took."""
    version, _, name = cluster.partition("/")
    started = time.monotonic()
    result = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart", "-m", "fast"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise HarnessError(f"pg_ctlcluster restart failed: {result.stderr.strip()}")
    return time.monotonic() - started


NGINX_CONFIG = REPO / "deploy" / "nginx.conf"
UPSTREAM_LINE = "server @UPSTREAM@;"  # in the upstream block; one such line per app server


@dataclass
class Nginx:
    """nginx in front of gunicorn (deploy/nginx.conf): media and static files served from disk,
    everything else proxied to ``upstream``, on plain HTTP over loopback."""

    workdir: Path
    port: int
    upstream: str  # host:port of gunicorn; several (app servers) separated by spaces or commas
    media_root: Path
    static_root: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.workdir / "nginx-access.log"

    def config(self) -> str:
        """deploy/nginx.conf with its placeholders filled in for this run."""
        text = NGINX_CONFIG.read_text()
        if UPSTREAM_LINE not in text:
            raise HarnessError(f"{NGINX_CONFIG} has no '{UPSTREAM_LINE}' line")
        # One `server` line per app server, indented as the placeholder's.
        indent = text.split(UPSTREAM_LINE)[0].rsplit("\n", 1)[-1]
        servers = self.upstream.replace(",", " ").split()
        text = text.replace(UPSTREAM_LINE, f"\n{indent}".join(f"server {s};" for s in servers))
        for name, value in {
            "PREFIX": self.workdir,
            "LISTEN": f"127.0.0.1:{self.port}",
            "MEDIA_ROOT": self.media_root,
            "STATIC_ROOT": self.static_root,
        }.items():
            text = text.replace(f"@{name}@", str(value))
        return text

    def start(self, *, timeout: float = 20) -> None:
        """Start nginx in the foreground of its own process; wait until it accepts connections."""
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).is_file():
            raise HarnessError(
                "--proxy nginx needs nginx (Debian: apt-get install nginx-light), or leave the "
                "option out to serve everything from gunicorn"
            )
        conf = self.workdir / "nginx.conf"
        conf.write_text(self.config())
        self.access_log.unlink(missing_ok=True)  # this run's requests only
        check = subprocess.run(
            [binary, "-t", "-q", "-c", str(conf), "-p", str(self.workdir)],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode != 0:
            raise HarnessError(f"nginx refused {conf}: {check.stderr.strip()}")
        directives = "daemon off;"
        if os.geteuid() == 0:
            # Started as root, nginx's workers would drop to nobody, who may not read the work
            # directory (pytest's is private); as another user they keep that user's rights.
            directives += " user root;"
        self.process = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(self.workdir), "-g", directives],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HarnessError(f"nginx exited; see {self.workdir / 'nginx-error.log'}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise HarnessError(f"nginx did not accept connections within {timeout:.0f} s")

    def stop(self) -> None:
        """Graceful stop (SIGQUIT: open requests finish), which also flushes the access log."""
        process_stop(self.process, signal.SIGQUIT, timeout=30)


@dataclass
class Stack:
    """The app servers (one gunicorn master each, on its own port) and nginx in front, if any."""

    servers: list[Gunicorn]
    front: Nginx | None = None

    @property
    def url(self) -> str:
        """Where the participants go: nginx when it is in front, else the (only) app server."""
        return (self.front or self.servers[0]).url

    def start(self) -> None:
        for server in self.servers:
            server.start()
        if self.front is not None:
            self.front.start()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        if self.front is not None:
            self.front.stop()
