"""A restore's hold on `edgegw run`'s data-directory lock (gateway/run_lock.py): no gateway runs or starts meanwhile.

A gateway that runs while the files are swapped keeps writing into those moved aside, and what it
buffers after the swap is lost with them; one started half-way takes a part-restored directory for
the truth. So a restore takes the lock every `edgegw run` takes before it opens the buffer, whoever
started that gateway (systemd, supervisord, a technician by hand), and holds it until the files are
in place: refused while held, and a gateway started meanwhile stops at once (DataDirInUse). The
control socket is asked too: a gateway of a release before the lock holds none.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from gateway.backup import archive
from gateway.errors import BufferUnavailable
from gateway.run_lock import LOCK_FILE, LOCK_MODE, DataDirInUse, DataDirLock

_UNKNOWN = "a process (`lslocks` names it)"


class GatewayLock:
    """`make_room` before the services stop, `take` once they are (or at once, with none to stop), `release`
    before they start again: they would find it held."""

    def __init__(self, data_dir: Path, control_path: Path) -> None:
        self.data_dir = data_dir
        self.control_path = control_path
        self.path = data_dir / LOCK_FILE
        self._made = False
        self._held: DataDirLock | None = None

    def make_room(self) -> None:
        """The lock file made now if no gateway ever made it (a box not started since it was installed): then taking
        it once the services are stopped needs no room on a disk that may fill meanwhile. Removed by `release`."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, LOCK_MODE)
        except FileExistsError:
            return
        except OSError as exc:
            raise archive.BackupError(
                f"backup restore: cannot make the gateway's lock file {self.path}, got {exc.strerror or exc}; nothing "
                "was stopped or changed: check that this user may write to the data directory (run as root or as "
                "the service user)"
            ) from None
        os.close(fd)
        self._made = True
        archive.give_to(self.data_dir.stat(), [self.path])  # a root restore's: the service user's gateway opens it

    def take(self, fix: str) -> None:
        """The lock held, or BackupError (`fix` appended) naming the gateway that runs on the data directory."""
        where = f"backup restore: a gateway runs on the data directory {self.data_dir}"
        try:
            held = DataDirLock.take(self.data_dir)
        except DataDirInUse:
            raise archive.BackupError(f"{where}, got {self.path} held by {self._holder()}; {fix}") from None
        except BufferUnavailable as exc:
            raise archive.BackupError(f"backup restore: {exc}; {fix}") from None
        if _answers(self.control_path):
            held.release()
            raise archive.BackupError(
                f"{where}: the gateway is running (its control socket {self.control_path} answers); {fix}"
            )
        self._held = held

    def release(self) -> None:
        held, self._held = self._held, None
        if self._made:
            # removed while still held, as it was not there before: a gateway that opened it meanwhile finds it held
            # and stops; one that starts later makes its own
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self._made = False
        if held is not None:
            held.release()

    def _holder(self) -> str:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return _UNKNOWN
        try:
            return archive.lock_holder(fd, unknown=_UNKNOWN)
        finally:
            os.close(fd)


def _answers(sock: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(sock))
    except OSError:  # none there, or one its gateway left behind (kill -9): refused
        return False
    finally:
        s.close()
    return True
