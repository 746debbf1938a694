"""A run's workdir: one path layer for its files, checked before the start-up, held by one run at a time.

Files go through `etils.epath`, so a workdir may be local or a bucket (gs://, s3://, az://, through fsspec).
Object stores have no append and no rename: there `Appender` and `write_text` rewrite whole objects.
`check_creatable` stops a main early when the workdir cannot be made or written; `lock` holds <workdir>/run.lock
while a run trains (a second start stops naming the holder; a dead holder's lock on this host is taken over).
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import socket
import sys
import tempfile
import time
import uuid

import numpy as np
from etils import epath

LOCK = "run.lock"
SCHEMES = ("gs", "s3", "az")  # remote workdirs epath can reach (through fsspec)


path = epath.Path  # path(*parts): a local or remote path


def is_remote(p) -> bool:
    return "://" in str(p)


def absolute(p: str) -> str:
    """An absolute local path; a remote one as it is."""
    return str(p) if is_remote(p) else os.path.abspath(p)


def write_text(p, data: str | bytes) -> None:
    """Replaces the file's contents (text or bytes) whole: locally through a temporary file and a rename (a kill
    leaves the old or the new file), remotely as one object write."""
    p = path(p)
    target = p if is_remote(p) else p.with_name(p.name + ".tmp")
    with target.open("wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    if target != p:
        target.replace(p)


def savefig(fig, p, **kwargs) -> None:
    """`fig.savefig(p, **kwargs)` through the path layer (the format from p's suffix)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=path(p).suffix[1:], **kwargs)
    write_text(p, buf.getvalue())


def savez(p, *, compressed: bool = False, **arrays) -> None:
    """`np.savez(p, **arrays)` (or `np.savez_compressed`) through the path layer."""
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    write_text(p, buf.getvalue())


def load_npz(p) -> dict:
    """{name: array} of an .npz file written by `savez`."""
    with np.load(io.BytesIO(path(p).read_bytes())) as z:
        return {k: z[k] for k in z.files}


class Appender:
    """Appends text to one file. Remotely the text is kept in memory and the object rewritten on `flush` / `close`
    and at most every `every_s` seconds (a kill loses what came after the last rewrite)."""

    def __init__(self, p, every_s: float = 30.0):
        self.path, self.every_s = path(p), every_s
        self._parts: list[str] | None = None  # remote: the whole text, in pieces
        self._pending, self._flushed = False, time.monotonic()

    def write(self, text: str) -> None:
        if not is_remote(self.path):
            with self.path.open("a") as f:
                f.write(text)
            return
        if self._parts is None:
            self._parts = [self.path.read_text() if self.path.exists() else ""]
        self._parts.append(text)
        self._pending = True
        if time.monotonic() - self._flushed >= self.every_s:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.path.write_text("".join(self._parts))
            self._pending, self._flushed = False, time.monotonic()

    close = flush


class Held(Exception):
    """The workdir is held by another run that is (or may be) still going."""


def check_creatable(workdir: str) -> None:
    """Raises ValueError (one line) if `workdir` is not a writable directory and cannot be made one. Writes nothing
    into an existing workdir; for a new one, makes and removes an empty directory beside where it would be."""
    if not workdir:
        return
    fix = "give --workdir a directory you can write to"
    if is_remote(workdir):
        scheme = str(workdir).split("://", 1)[0]
        if scheme not in SCHEMES:
            raise ValueError(
                f"--workdir={workdir}: {scheme}:// is not supported; use a local directory or one of "
                f"{', '.join(s + '://' for s in SCHEMES)}"
            )
        try:
            if path(workdir).exists() and not path(workdir).is_dir():
                raise ValueError(f"--workdir={workdir}: it is a file, not a directory; {fix}")
        except (ImportError, OSError, RuntimeError) as e:  # no fsspec backend installed, no access, no network
            why = " ".join(f"{type(e).__name__}: {e}".split())[:300]
            raise ValueError(f"--workdir={workdir}: cannot reach it ({why}); {fix}") from None
        return
    local = os.path.abspath(workdir)
    if os.path.exists(local):
        if not os.path.isdir(local):
            raise ValueError(f"--workdir={workdir}: it is a file, not a directory; {fix}")
        if not os.access(local, os.W_OK | os.X_OK):
            raise ValueError(f"--workdir={workdir}: not writable; {fix}")
        return
    parent = os.path.dirname(local)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    try:
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".workdir-check-"))
    except OSError as e:
        raise ValueError(f"--workdir={workdir}: cannot create it ({e.strerror} in {parent}); {fix}") from None


def _start_time(pid: int) -> str | None:
    """The process's start time since boot (Linux /proc), which tells a reused process id apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(holder: dict) -> bool:
    """Whether the holder may still run: always True for another host (its processes cannot be seen from here)."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = int(holder.get("pid", -1))
    try:
        os.kill(pid, 0)
    except PermissionError:  # alive, another user's
        pass
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    return holder.get("pid_start") in (None, _start_time(pid))


def _create(lock: str, text: str, token: str) -> bool:
    """Writes the lock file if there is none (False if there is one). Locally an exclusive create; an object
    store has none: the last writer wins, and reading the lock back tells whether that was this one."""
    if not is_remote(lock):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return True
    if path(lock).exists():
        return False
    path(lock).write_text(text)
    return _holder(lock) is not None and _holder(lock).get("token") == token


def _holder(lock: str) -> dict | None:
    try:
        return json.loads(path(lock).read_text())
    except (OSError, json.JSONDecodeError):  # being written or removed right now
        return None


def _acquire(lock: str) -> dict:
    me = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_start": _start_time(os.getpid()),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": list(sys.argv),
        "token": uuid.uuid4().hex,
    }
    for _ in range(3):
        if _create(lock, json.dumps(me, indent=2) + "\n", me["token"]):
            return me
        holder = _holder(lock)
        if holder is not None and _alive(holder):
            raise Held(
                f"the workdir is in use by process {holder.get('pid')} on host {holder.get('host')} (since "
                f"{holder.get('started')}, lock {lock}); wait for it to finish, or stop it, or use another workdir"
            )
        if holder is not None:
            print(f"[workdir] taking over the stale lock of process {holder.get('pid')} ({lock})", flush=True)
            path(lock).unlink(missing_ok=True)
    raise Held(f"could not take the lock {lock}: other starts keep taking it")


@contextlib.contextmanager
def lock(workdir: str | None):
    """Holds `workdir` for the run inside (process 0 makes the directory and takes <workdir>/run.lock); on the way
    out removes the lock, and a directory it made that stayed empty. Raises Held if another run holds it."""
    import jax
    from jax.experimental import multihost_utils

    if not workdir:
        yield
        return
    lock_path, made, message = os.path.join(workdir, LOCK), not path(workdir).exists(), ""
    me = None
    if jax.process_index() == 0:
        path(workdir).mkdir(parents=True, exist_ok=True)
        try:
            me = _acquire(lock_path)
        except Held as e:
            message = str(e)
    if jax.process_count() > 1:  # one holder: every process stops if process 0 could not take the lock
        held = multihost_utils.broadcast_one_to_all(int(bool(message)))
        message = message or ("process 0 could not take the workdir lock" if held else "")
    if message:
        raise Held(message)
    try:
        yield
    finally:
        if me is not None:
            if (_holder(lock_path) or {}).get("token") == me["token"]:
                path(lock_path).unlink(missing_ok=True)
            if made and not is_remote(workdir):
                with contextlib.suppress(OSError):
                    os.rmdir(workdir)  # only if empty: a run that wrote nothing leaves nothing
