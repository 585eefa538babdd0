"""The state directory: made private (0700), held by one ``serve`` at a time, and the way the
commands that change what the daemon uses (list of domains, directory) tell it to reload.

The lock is an ``flock`` on ``<state_dir>/passerelle.pid``, taken before anything else in the
directory is touched (spill files, leases, the spool): a second ``serve`` on the same folder
stops at once with "already running (pid N)" and exit 75, and changes nothing.  The kernel
drops the lock when the process dies, even by ``kill -9``, so a stale pid file never blocks a
restart.  The file holds the pid of the daemon holding it, which ``passerelle whitelist
import`` and ``directory import`` signal (SIGHUP) so that the running daemon sees what they
installed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from gateway.errors import AlreadyRunning

__all__ = ["AlreadyRunning", "hold", "prepare", "reload_daemon", "running_pid", "tell_daemon"]

LOCK_NAME = "passerelle.pid"


def prepare(state_dir: Path) -> None:
    """Create the state directory, readable by the service's user only (whatever the umask)."""
    if not state_dir.exists():
        state_dir.mkdir(parents=True, mode=0o700)
        os.chmod(state_dir, 0o700)  # mkdir's mode is filtered by the umask


def _pid_in(fd: int) -> int | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 32).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def hold(state_dir: Path) -> Iterator[None]:
    """Hold ``state_dir`` for this process, or raise ``AlreadyRunning`` naming the holder."""
    prepare(state_dir)
    path = state_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _pid_in(fd)
            raise AlreadyRunning(f"already running (pid {pid if pid else '?'}) on state "
                                 f"directory {state_dir}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def running_pid(state_dir: Path) -> int | None:
    """The pid of the ``serve`` holding ``state_dir``, or None when none does."""
    try:
        fd = os.open(state_dir / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _pid_in(fd)
        return None  # we could take it: nobody holds it
    finally:
        os.close(fd)


def tell_daemon(state_dir: Path) -> int | None:
    """Ask the daemon holding ``state_dir`` (if any) to reload (SIGHUP); its pid, or None."""
    pid = running_pid(state_dir)
    if pid is None:
        return None
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return None
    return pid


def reload_daemon(state_dir: Path) -> str:
    """Tell the daemon on ``state_dir`` to reload, and say what happened (for a command's
    output after it changed a file the daemon uses)."""
    pid = tell_daemon(state_dir)
    if pid is None:
        return f"no daemon is running on {state_dir}: it will read this when it starts"
    return f"the running daemon (pid {pid}) was told to reload (SIGHUP)"


def private_files(database: Path) -> None:
    """Make a SQLite database and its ``-wal`` and ``-shm`` files readable by this user only
    (0600), whatever the umask they were created under: they hold messages (sealed or not),
    addresses and the journal.  A file of another owner is left as it is (``config check``
    says so).  A database not there yet is created empty with that mode (SQLite would make
    it with the umask's).

    An existing database is never opened here, only looked at and chmod'ed: closing any
    descriptor of a SQLite file drops every POSIX lock this process holds on it, those of
    its other connections too, and another process (a translation worker) could then write
    under them — the database was corrupted that way ("file is not a database")."""
    if not database.exists():
        with contextlib.suppress(OSError):  # (made meanwhile by another: theirs stands)
            os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        with contextlib.suppress(OSError):
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
