"""Where computed cells are computed: this process's threads, processes on this machine, or a
Dask cluster.

``executor='threads'`` (the default) computes in this process: Pillow releases the GIL, so a
thread per core scales for image functions. ``'processes'`` runs tasks in a pool of worker
processes on this machine (a UDF in plain Python holds the GIL: only processes use every core).
A Dask ``distributed.Client``, or a scheduler address such as ``'tcp://host:8786'``, sends the
tasks to a cluster. Dask is the scheduler: pxlite writes none of its own.

The catalog stays in this process. A task carries the table's column definitions (JSON
expressions, no code), the destination prefixes, the rows' stored input references and the
*non-secret* settings (endpoints, regions, limits); a worker reads inputs through its own
download cache, writes outputs straight to the destination (content-addressed: a retried task
writes the same keys) and sends back cells. Credentials never travel in a task: workers use
their own configuration (environment, ``$PXLITE_HOME/config.toml``, instance roles). A pool of
processes on this machine is this program's own children: they get its settings, credentials
included, once when they start (as a fork would), never inside a task.

This module knows pools and where they run; what a task computes is :mod:`pxlite.compute`'s.
"""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from . import config
from .config import (
    DASK_ADDRESS_SCHEMES,
    EXECUTOR_NAMES,
    PROVIDER_KEYS,
    PROVIDERS,
    SECRET_KEYS,
    URL_KEYS,
)
from .errors import ConfigError, ExecutorError, SchemaError
from .redact import public_url, redact
from .storage.base import is_loopback_url
from .udf import lookup

if TYPE_CHECKING:
    from .config import Settings


#: Seconds to reach a Dask scheduler given by address before saying it cannot be reached (Dask's
#: own default, 30 s, is long to wait for a typo in an address).
CONNECT_TIMEOUT_S = 10.0

#: [pxlite] settings a worker needs to compute the way this process would. Not the cache size or
#: home (the worker's own disk), not destinations (a task carries its prefixes).
TRAVELLING_KEYS = ("max_image_pixels", "storage_timeout_s", "download_timeout_s",
                   "max_download_bytes", "decode_memory_mb", "storage_retries",
                   "storage_retry_delay_s", "udf_modules")
#: Provider settings that say *where* (endpoints, regions, accounts), never *who*: credentials,
#: profiles and credential files stay with each machine's own configuration.
CREDENTIAL_KEYS = SECRET_KEYS | {"aws_access_key_id", "profile", "credentials_file"}


def check_executor(value: Any) -> Any:
    """Validate ``executor=``: ``'threads'``, ``'processes'``, a Dask scheduler address or a
    ``distributed.Client``; returns it. Anything else is a SchemaError saying what is accepted."""
    if isinstance(value, str):
        if value in EXECUTOR_NAMES:
            return value
        if value.startswith(DASK_ADDRESS_SCHEMES):
            problem = config.executor_address_problem(value)
            if problem is not None:
                raise SchemaError(problem)
            return value
    elif _is_dask_client(value):
        return value
    raise SchemaError(
        f"executor must be 'threads', 'processes', a Dask scheduler address such as "
        f"'tcp://127.0.0.1:8786' or a distributed.Client; got {redact(repr(value))}")


def _is_dask_client(value: Any) -> bool:
    # Duck-typed: checking isinstance would import distributed (~0.5 s) for every call.
    return type(value).__name__ == "Client" and type(value).__module__.startswith("distributed")


def is_threads(executor: Any) -> bool:
    return executor is None or executor == "threads"


def travelling_settings(settings: Settings) -> dict[str, Any]:
    """The settings a task carries: the [pxlite] keys a worker needs and the provider settings
    that say where storage is, without a single credential."""
    layer: dict[str, Any] = {k: settings.get(k) for k in TRAVELLING_KEYS
                             if settings.get(k) is not None}
    for p in PROVIDERS:
        section = {k: public_url(v) if k in URL_KEYS and isinstance(v, str) else v
                   for k, v in settings.provider(p).items()
                   if k not in CREDENTIAL_KEYS and k in PROVIDER_KEYS[p]}
        if section:  # (a URL keeps no user-info or query string: a SAS token is a credential)
            layer[p] = section
    return layer


def own_settings(settings: Settings) -> dict[str, Any]:
    """All of this process's settings as one layer (credentials included): handed once to the
    worker processes this process starts on its own machine, never to a task or a cluster."""
    layer: dict[str, Any] = {k: v for k, v in settings.values.items() if v is not None}
    for p in PROVIDERS:
        if settings.provider(p):
            layer[p] = settings.provider(p)
    return layer


# ---- pools ---------------------------------------------------------------------------------------
class Pool(ABC):
    """Somewhere tasks run: ``submit(fn, payloads)`` starts them, ``gather`` waits for their
    results, in order."""

    #: How it is named in messages ("2 worker processes", "the Dask cluster at tcp://...").
    name: str
    #: Tasks it runs at once (the batch of rows is split into about twice as many tasks).
    slots: int
    #: True when some worker is on another machine: local files are out of its reach.
    remote: bool = False

    @abstractmethod
    def submit(self, fn: Callable[[Any], Any], payloads: Sequence[Any]) -> Any:
        """Start ``fn(payload)`` for each payload; returns what :meth:`gather` takes."""

    @abstractmethod
    def gather(self, handle: Any) -> list[Any]:
        """The results of started tasks, in order. The pool failing (not a task's own error)
        is an ExecutorError."""

    @abstractmethod
    def close(self) -> None:
        """Release what this pool started (worker processes, an own client)."""


def _init_process(layer: dict[str, Any]) -> None:
    """In each worker process at start: this program's settings (see module docstring)."""
    config.reset()
    config.configure(**layer)


class ProcessPool(Pool):
    """Worker processes on this machine, one per core (``forkserver`` where the platform has it,
    else ``spawn``: forking a process that runs threads can deadlock)."""

    def __init__(self, settings: Settings, processes: int | None = None) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        n = processes or max(1, os.cpu_count() or 1)
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        self._pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx,
                                         initializer=_init_process,
                                         initargs=(own_settings(settings),))
        self.name, self.slots = f"{n} worker processes on this machine", n

    def submit(self, fn: Callable[[Any], Any], payloads: Sequence[Any]) -> Any:
        return [self._pool.submit(fn, p) for p in payloads]

    def gather(self, handle: Any) -> list[Any]:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return [f.result() for f in handle]
        except BrokenProcessPool as e:
            raise ExecutorError(
                f"a worker process of the 'processes' executor died ({e}); nothing of the "
                "unfinished rows was committed: run the same call again to go on") from e

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskPool(Pool):
    """A Dask cluster, given as a ``distributed.Client`` or a scheduler address (then this pool
    opens its own client and closes it when the operation ends)."""

    def __init__(self, target: Any) -> None:
        try:
            import distributed
        except ImportError as e:
            raise ExecutorError(
                "a Dask executor needs the 'distributed' package: pip install 'pxlite[dask]'"
            ) from e
        self._own = isinstance(target, str)
        try:
            self.client = distributed.Client(target, set_as_default=False,
                                             timeout=CONNECT_TIMEOUT_S) if self._own else target
            info = self.client.scheduler_info()
        except (OSError, TimeoutError, ValueError) as e:
            shown = public_url(target) if isinstance(target, str) else repr(target)
            raise ExecutorError(f"cannot reach the Dask scheduler at {shown!r}: "
                                f"{redact(str(e))}; is it running, and is the address "
                                "right?") from e
        workers = info.get("workers", {})
        self.address = str(info.get("address", target))
        self.slots = max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))
        self.remote = not all(on_this_machine(a) for a in [self.address, *workers])
        self.name = f"the Dask cluster at {self.address}"

    def submit(self, fn: Callable[[Any], Any], payloads: Sequence[Any]) -> Any:
        return [self.client.submit(fn, p, pure=False) for p in payloads]

    def gather(self, handle: Any) -> list[Any]:
        from concurrent.futures import CancelledError

        from distributed import KilledWorker

        try:
            return list(self.client.gather(handle))
        except KilledWorker as e:
            raise ExecutorError(
                f"a task was lost with every worker that tried it on {self.name} ({e}); "
                "nothing of the unfinished rows was committed: run the same call again") from e
        except (OSError, TimeoutError, CancelledError) as e:
            raise ExecutorError(
                f"lost contact with {self.name} ({type(e).__name__}: {e}); nothing of the "
                "unfinished rows was committed: when the cluster is back, run the same call "
                "again to go on where it stopped") from e
        finally:
            with contextlib.suppress(Exception):
                self.client.cancel([f for f in handle if not f.done()])

    def close(self) -> None:
        if self._own:
            with contextlib.suppress(Exception):
                self.client.close(timeout=5)


@contextlib.contextmanager
def opened(executor: Any, settings: Settings, *,
           outputs: Callable[[], Sequence[tuple[str, str]]] = tuple,
           local_input: Callable[[], str | None] = lambda: None) -> Iterator[Pool | None]:
    """The pool ``executor`` (None: the ``executor`` setting) names, for one operation, or None
    for this process's own threads. A cluster with workers on other machines is refused up
    front when the operation would need local files there: ``outputs()`` are the ``(column,
    destination prefix)`` it writes, ``local_input()`` describes a local input file it would
    read (None when there is none). Unless ``shared_filesystem`` says the workers see this
    machine's files at the same paths."""
    executor = check_executor(settings.get("executor") if executor is None else executor)
    if is_threads(executor):
        yield None
        return
    pool = open_pool(executor, settings)
    try:
        if pool.remote and not settings.get("shared_filesystem"):
            fix = ("or, if every worker sees this machine's files at the same paths (a shared "
                   "filesystem), configure(shared_filesystem=True)")
            for name, prefix in outputs():
                if prefix.startswith("file:"):
                    raise ConfigError(
                        f"column {name!r} writes to the local folder {prefix}, which the "
                        f"workers of {pool.name} (not on this machine) cannot reach: give it a "
                        f"cloud destination (destination='s3://bucket/prefix/'), {fix}")
            found = local_input()
            if found is not None:
                raise ConfigError(
                    f"{found} is a file on this machine, which the workers of {pool.name} "
                    f"(not on this machine) cannot read: store inputs in cloud storage (e.g. "
                    f"input_media_dest='s3://bucket/inputs/'), {fix}")
        yield pool
    finally:
        pool.close()


def open_pool(executor: Any, settings: Settings) -> Pool:
    """The pool ``executor`` names (not ``'threads'``: that one is the caller's own)."""
    if executor == "processes":
        return ProcessPool(settings)
    return DaskPool(executor)


def on_this_machine(address: str) -> bool:
    """Is a Dask address (``tcp://host:port``, ``inproc://...``) on this machine?"""
    if address.startswith("inproc://") or is_loopback_url(address):
        return True
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    import socket  # here, not at import: it is not needed unless a cluster is used

    try:
        names = socket.gethostbyname_ex(socket.gethostname())
    except OSError:
        return False
    return host in {socket.gethostname(), names[0], *names[1], *names[2]}


def worker_name() -> str:
    """How a worker is named in messages: its Dask address, else its process id and host."""
    try:
        from distributed import get_worker

        return f"worker {get_worker().address}"
    except (ImportError, ValueError):
        import socket

        return f"worker process {os.getpid()} on {socket.gethostname()}"


def import_functions(functions: Sequence[tuple[str, str]]) -> None:
    """On a worker: import the modules of the UDFs a task calls, ``(qualified name, module)``,
    and check each is registered; else an ExecutorError naming the function and the worker."""
    import importlib

    for name, module in functions:
        try:
            importlib.import_module(module)
            lookup(name)
        except Exception as e:
            hint = ("it is defined in a script or notebook (__main__), which workers cannot "
                    "import: move it into a module" if module in ("__main__", "__mp_main__")
                    else "install that module where the workers run")
            raise ExecutorError(
                f"function {name!r} is not available on {worker_name()}: "
                f"{type(e).__name__}: {e}; {hint} (with Dask, e.g. the same environment on "
                "every worker, or client.upload_file), then run the same call again") from None
