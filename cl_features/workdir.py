"""A run's workdir: checked before the start-up, and held by one run at a time.

`check_creatable(workdir)` stops a main before anything slow when the workdir cannot be made or written.
`lock(workdir)` holds <workdir>/run.lock ({"host", "pid", ...}) while the run trains: a second start on a held
workdir stops with one line naming the holder; a lock whose holder process is gone (same host) is taken over. A
multi-host run is one holder: process 0 takes the lock and every process learns the outcome.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
import tempfile
import uuid

LOCK = "run.lock"


class Held(Exception):
    """The workdir is held by another run that is (or may be) still going."""


def check_creatable(workdir: str) -> None:
    """Raises ValueError (one line) if `workdir` is not a writable directory and cannot be made one. Writes nothing
    into an existing workdir; for a new one, makes and removes an empty directory beside where it would be."""
    if not workdir:
        return
    fix = "give --workdir a directory you can write to"
    path = os.path.abspath(workdir)
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ValueError(f"--workdir={workdir}: it is a file, not a directory; {fix}")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"--workdir={workdir}: not writable; {fix}")
        return
    parent = os.path.dirname(path)
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
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except (OverflowError, ValueError):
        return False
    return holder.get("pid_start") in (None, _start_time(pid))


def _describe(holder: dict, path: str) -> str:
    return (
        f"process {holder.get('pid')} on host {holder.get('host')} (since {holder.get('started')}, lock {path}); "
        f"wait for it to finish, or stop it, or use another workdir"
    )


def _acquire(path: str) -> dict:
    me = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_start": _start_time(os.getpid()),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": list(sys.argv),
        "token": uuid.uuid4().hex,
    }
    text = json.dumps(me, indent=2) + "\n"
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                with open(path) as f:
                    holder = json.load(f)
            except (OSError, json.JSONDecodeError):  # being written or removed right now: look again
                holder = None
            if holder is not None and _alive(holder):
                raise Held(f"the workdir is in use by {_describe(holder, path)}") from None
            if holder is not None:
                print(f"[workdir] taking over the stale lock of process {holder.get('pid')} ({path})", flush=True)
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return me
    raise Held(f"could not take the lock {path}: other starts keep taking it")


@contextlib.contextmanager
def lock(workdir: str | None):
    """Holds `workdir` for the run inside (process 0 makes the directory and takes <workdir>/run.lock); on the way
    out removes the lock, and a directory it made that stayed empty. Raises Held if another run holds it."""
    import jax
    from jax.experimental import multihost_utils

    if not workdir:
        yield
        return
    path, made, message = os.path.join(workdir, LOCK), not os.path.exists(workdir), ""
    me = None
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        try:
            me = _acquire(path)
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
            with contextlib.suppress(OSError, json.JSONDecodeError):
                with open(path) as f:
                    ours = json.load(f).get("token") == me["token"]
                if ours:
                    os.remove(path)
            if made:
                with contextlib.suppress(OSError):
                    os.rmdir(workdir)  # only if empty: a run that wrote nothing leaves nothing
