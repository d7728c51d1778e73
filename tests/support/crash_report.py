"""When the test process itself dies (SIGSEGV in a C library, SIGKILL by the OOM killer): which test, and
which thread.

A run that dies prints no test name, and CI keeps only the head and the tail of a long output: the one
thread that crashed sat in the cut middle of faulthandler's dump of every thread. With EDGEGW_CRASH_DIR
set (`make test` sets it), faulthandler writes into that directory instead of stderr, and the test in
progress is kept there by phase; `python -m tests.support.crash_report <dir> <exit status>` then prints
the dump, and after it, last, the test and the crashing thread's stack.

Under pytest-xdist (`make test` runs the suite in several worker processes) each worker keeps its own
sub-folder, named for the worker (gw0, gw1, ...): a worker that dies is replaced and the run goes on, so
its crash shows in the run's exit status only as a failure, and the report names the worker.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from pathlib import Path
from typing import IO, Any

import pytest

ENV = "EDGEGW_CRASH_DIR"
DUMP, RUNNING = "faulthandler.log", "running"
SESSION_END = "the session's end"
_WORKER_INPUT = "edgegw_crash_dir"  # how the xdist controller hands the folder to its workers

_where: Path | None = None
_dump: IO[str] | None = None  # kept open: faulthandler writes to its descriptor from the signal handler
_running: int | None = None


def _at(where: str) -> None:
    if _running is not None:
        os.ftruncate(_running, 0)
        os.pwrite(_running, where.encode(), 0)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    global _where
    handed: dict[str, str] | None = getattr(config, "workerinput", None)  # set in an xdist worker only
    if handed is not None:
        where = handed.get(_WORKER_INPUT)
        _where = Path(where) / handed["workerid"] if where else None
    else:
        # popped before xdist starts its workers: a pytest started by a test (or a worker) keeps its own
        where = os.environ.pop(ENV, None)
        _where = Path(where) if where else None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist's hook, in the controller, before a worker starts."""
    if _where is not None:
        node.workerinput[_WORKER_INPUT] = str(_where)


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """After pytest's own faulthandler plugin has enabled it on stderr: the same, into the crash directory."""
    global _dump, _running
    folder = _where
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    _dump = open(folder / DUMP, "w", encoding="utf-8")  # noqa: SIM115 - open for the whole session
    faulthandler.enable(file=_dump, all_threads=True)
    _running = os.open(folder / RUNNING, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _at(f"{item.nodeid} (setup)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    _at(f"{item.nodeid} (call)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    _at(f"{item.nodeid} (teardown)")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    _at(f"{SESSION_END} (reports, coverage), after the last test")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """After pytest's faulthandler plugin has turned it off (or back to stderr): our files may close. Without
    that plugin (`-p no:faulthandler`) it still writes to our file's descriptor, which the next open() gets."""
    global _dump, _running
    if _dump is not None:
        if faulthandler.is_enabled():
            faulthandler.enable(file=2, all_threads=True)  # the process's stderr
        _dump.close()
        _dump = None
    if _running is not None:
        os.close(_running)
        _running = None


def crashed_thread(dump: str, frames: int = 12) -> str:
    """The start of faulthandler's block for the thread that crashed ("Current thread ...": its `frames`
    innermost calls, above the test runner's own), or why there is none."""
    for block in dump.split("\n\n"):
        if block.lstrip().startswith("Current thread"):
            lines = block.strip().splitlines()
            return "\n".join(lines[: frames + 1] + (["  ..."] if len(lines) > frames + 1 else []))
    return "no Python thread was current: the crash came from a thread of a C library, or one past its end"


_NO_DUMP = {int(signal.SIGKILL): " (SIGKILL, the OOM killer's too, leaves no dump)"}


def report(folder: Path, status: int) -> str:
    """What `make test` prints after pytest exited with `status` (a shell's 128 + signal number): the whole
    dump, then the crashing thread's innermost calls, and last the test it happened in."""
    dump_path, running_path = folder / DUMP, folder / RUNNING
    dump = dump_path.read_text(encoding="utf-8", errors="replace") if dump_path.exists() else ""
    running = running_path.read_text(encoding="utf-8") if running_path.exists() else ""
    try:
        how = f"signal {signal.Signals(status - 128).name}"
    except ValueError:
        how = f"exit status {status}"
    lines = [dump.rstrip(), ""] if dump.strip() else []
    lines += [
        crashed_thread(dump) if dump.strip() else "faulthandler wrote nothing" + _NO_DUMP.get(status - 128, ""),
        f"pytest died of {how} during {running or 'no test (before the first one)'}",
    ]
    return "\n".join(lines)


def worker_reports(folder: Path) -> list[str]:
    """One report for each xdist worker that did not reach the session's end: the dump, its crashing thread
    and, last, the test it was in. A worker killed outright (SIGKILL) leaves no dump, only the test."""
    said = []
    for worker in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else ():
        dump_path, running_path = worker / DUMP, worker / RUNNING
        dump = dump_path.read_text(encoding="utf-8", errors="replace") if dump_path.exists() else ""
        running = running_path.read_text(encoding="utf-8") if running_path.exists() else ""
        if running.startswith(SESSION_END) and not dump.strip():
            continue
        lines = [dump.rstrip(), ""] if dump.strip() else []
        lines += [
            crashed_thread(dump)
            if dump.strip()
            else "faulthandler wrote nothing (a SIGKILL, or an os._exit, leaves no dump)",
            f"pytest worker {worker.name} died during {running or 'no test (before the first one)'}",
        ]
        said.append("\n".join(lines))
    return said


def main(folder: Path, status: int) -> int:
    """Print what is known of every process of the run that died: 1 if one did (keep the folder), else 0."""
    said = ([report(folder, status)] if status > 128 else []) + worker_reports(folder)
    for text in said:
        print(text, file=sys.stderr)
    return 1 if said else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2])))
