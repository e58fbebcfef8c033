"""Start local storage emulators on loopback for tests and benchmarks (no pytest needed).

Each server runs in its own process group (``start_new_session=True``) on a free 127.0.0.1 port;
``stop()`` ends the whole group, so helper processes a launcher spawns die with it. A missing
server raises :class:`ServerNotInstalled` whose message says how to install it.

    with moto_server() as s3:            # s3.endpoint == "http://127.0.0.1:PORT"
        ...
    with azurite_server() as az:         # az.connection_string for the devstoreaccount1 account
        ...
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: The well-known Azurite development account (public, documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
#: Where the project's test script installs Azurite (``npm install --prefix .tools/azurite``).
AZURITE_LOCAL_BIN = (
    Path(__file__).resolve().parent.parent / ".tools" / "azurite" / "node_modules" / ".bin"
    / "azurite-blob"
)
AZURITE_INSTALL = "npm install --no-save --prefix .tools/azurite azurite@3.35.0"


class ServerNotInstalled(RuntimeError):
    """The emulator's program is not installed; the message says how to install it."""


class ServerFailed(RuntimeError):
    """The emulator started but did not answer, or exited; the message holds its log tail."""


@dataclass
class RunningServer:
    """A started emulator: ``endpoint`` (``http://127.0.0.1:PORT``), Azurite's connection string."""

    name: str
    endpoint: str
    process: subprocess.Popen
    log_path: Path
    connection_string: str | None = None
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Stop the server's whole process group (idempotent): SIGTERM, then SIGKILL after 5 s."""
        if self._stopped:
            return
        self._stopped = True
        _kill_group(self.process)

    def log_tail(self, n: int = 30) -> str:
        """The last ``n`` lines of the server's log, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)  # pid == pgid because of start_new_session=True
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _answers(url: str) -> bool:
    """True once the server sends any HTTP response (even an error status) to ``url``."""
    try:
        with urllib.request.urlopen(url, timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def _start(name: str, argv: list[str], port: int, probe_path: str, *,
           timeout_s: float = 30.0, env: dict[str, str] | None = None) -> RunningServer:
    log = Path(tempfile.mkstemp(prefix=f"pxlite-{name}-", suffix=".log")[1])
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, **(env or {})},
        )
    server = RunningServer(name, f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerFailed(f"{name} exited with code {proc.returncode}:\n{server.log_tail()}")
        if _answers(server.endpoint + probe_path):
            return server
        time.sleep(0.1)
    server.stop()
    raise ServerFailed(f"{name} did not answer within {timeout_s:.0f} s:\n{server.log_tail()}")


def _need_module(module: str, install: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ServerNotInstalled(f"{module} is not installed; install it with: {install}")


def start_moto() -> RunningServer:
    """Start ``moto_server`` (S3 and S3-compatible providers); stop it with ``.stop()``."""
    _need_module("moto", "pip install 'moto[server]'")
    _need_module("flask", "pip install 'moto[server]'")
    port = free_port()
    return _start("moto_server", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                  "-p", str(port)], port, "/moto-api/")


def start_gcs() -> RunningServer:
    """Start ``gcp-storage-emulator`` in memory; stop it with ``.stop()``."""
    _need_module("gcp_storage_emulator", "pip install gcp-storage-emulator")
    port = free_port()
    return _start("gcp-storage-emulator",
                  [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
                   "--port", str(port), "--in-memory", "-q"], port, "/")


def azurite_binary() -> str:
    """Path of ``azurite-blob``: ``$PXLITE_AZURITE``, the project's ``.tools`` install, or PATH."""
    for candidate in (os.environ.get("PXLITE_AZURITE"), str(AZURITE_LOCAL_BIN),
                      shutil.which("azurite-blob")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ServerNotInstalled(
        f"azurite-blob is not installed; from the repository root run: {AZURITE_INSTALL} "
        "(needs Node.js 18 or 20; Azurite 3.36+ needs Node 22), or set PXLITE_AZURITE"
    )


def azurite_connection_string(endpoint: str, key: str = AZURITE_KEY) -> str:
    """The connection string of Azurite's devstoreaccount1 at ``endpoint`` (``key`` for tests)."""
    return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key};"
            f"BlobEndpoint={endpoint}/{AZURITE_ACCOUNT};")


def start_azurite(location: str | os.PathLike | None = None) -> RunningServer:
    """Start ``azurite-blob`` with data under ``location`` (a temp dir when None)."""
    binary = azurite_binary()
    port = free_port()
    where = str(location or tempfile.mkdtemp(prefix="pxlite-azurite-"))
    server = _start("azurite-blob",
                    [binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location",
                     where, "--skipApiVersionCheck", "--silent", "--disableTelemetry"],
                    port, f"/{AZURITE_ACCOUNT}?comp=list")
    server.connection_string = azurite_connection_string(server.endpoint)
    return server


@contextlib.contextmanager
def moto_server() -> Iterator[RunningServer]:
    """Run moto_server for the ``with`` block; yields it (``.endpoint``)."""
    server = start_moto()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def gcs_server() -> Iterator[RunningServer]:
    """Run gcp-storage-emulator for the ``with`` block; yields it (``.endpoint``)."""
    server = start_gcs()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def azurite_server(location: str | os.PathLike | None = None) -> Iterator[RunningServer]:
    """Run Azurite (blob only) for the ``with`` block; yields it (``.endpoint``,
    ``.connection_string``)."""
    with contextlib.ExitStack() as stack:
        if location is None:
            location = stack.enter_context(tempfile.TemporaryDirectory(prefix="pxlite-azurite-"))
        server = start_azurite(location)
        stack.callback(server.stop)
        yield server


if __name__ == "__main__":  # manual smoke check: start all three, print endpoints, stop
    with moto_server() as m, gcs_server() as g, azurite_server() as a:
        print("moto ", m.endpoint)
        print("gcs  ", g.endpoint)
        print("azure", a.endpoint, a.connection_string)
