"""tests/support/crash_report: a test run that dies of a signal says which test and which thread, last."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.crash_report import ENV, SESSION_END, crashed_thread, main, report, worker_reports

ROOT = Path(__file__).resolve().parents[1]

CRASHING = """
import ctypes
import threading
import time


def test_fine():
    pass


def test_reads_address_zero():
    threading.Thread(target=time.sleep, args=(30,), daemon=True, name="bystander").start()
    ctypes.string_at(0)
"""


def test_a_segfault_names_the_test_and_its_thread_after_every_other_thread(tmp_path: Path) -> None:
    (tmp_path / "test_crashing.py").write_text(CRASHING)
    crash = tmp_path / "crash"
    env = {**os.environ, ENV: str(crash), "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.support.crash_report", "."],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == -11, run.stdout + run.stderr
    said = report(crash, 128 + 11).splitlines()
    # what a cut-off CI log still shows, last: the crashing thread's innermost calls, then the test
    assert said[-1] == "pytest died of signal SIGSEGV during test_crashing.py::test_reads_address_zero (call)"
    current = max(i for i, line in enumerate(said) if line.startswith("Current thread"))
    assert said[current + 1].endswith("in string_at")
    assert 'test_crashing.py", line 13 in test_reads_address_zero' in said[current + 2]
    assert said[-2] == "  ..." and len(said) - current == 15  # 12 calls, not the test runner's 30 below them
    assert any(line.startswith("Thread 0x") for line in said[:current])  # the bystander, in the whole dump


def test_a_kill_says_there_is_no_dump_and_names_the_test(tmp_path: Path) -> None:
    (tmp_path / "running").write_text("tests/test_x.py::test_y (setup)")
    assert report(tmp_path, 128 + 9).splitlines() == [
        "faulthandler wrote nothing (SIGKILL, the OOM killer's too, leaves no dump)",
        "pytest died of signal SIGKILL during tests/test_x.py::test_y (setup)",
    ]


def test_a_crash_outside_python_threads_says_so() -> None:
    dump = 'Fatal Python error: Segmentation fault\n\nThread 0x1 (most recent call first):\n  File "x.py", line 1 in f'
    assert crashed_thread(dump).startswith("no Python thread was current")


def test_without_pytests_faulthandler_plugin_a_later_crash_is_not_written_into_another_file(tmp_path: Path) -> None:
    """Closing the dump file while faulthandler still wrote to it left its descriptor to the next open():
    a crash after the session wrote its dump into that file."""
    (tmp_path / "test_ok.py").write_text("def test_ok():\n    pass\n")
    after = (
        "import ctypes, pytest\n"
        "pytest.main(['-q', '-p', 'no:cacheprovider', '-p', 'no:faulthandler', '-p', 'tests.support.crash_report', "
        "'test_ok.py'])\n"
        "victim = open('victim.txt', 'w'); victim.write('my data'); victim.flush()\n"
        "ctypes.string_at(0)\n"
    )
    env = {**os.environ, ENV: str(tmp_path / "crash"), "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", after], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == -11
    assert (tmp_path / "victim.txt").read_text() == "my data"
    assert "Fatal Python error: Segmentation fault" in run.stderr


def test_under_xdist_a_worker_that_segfaults_is_named_with_its_test_and_thread(tmp_path: Path) -> None:
    """`make test` runs the suite in xdist workers: a worker that dies is replaced and the run only fails, so
    the controller's exit status says nothing of a signal. Each worker keeps its own folder and the report
    finds the one that died."""
    (tmp_path / "test_crashing.py").write_text(CRASHING)
    (tmp_path / "test_other.py").write_text("def test_ok():\n    pass\n")
    crash = tmp_path / "crash"
    env = {**os.environ, ENV: str(crash), "PYTHONPATH": str(ROOT)}
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.support.crash_report"]
    run = subprocess.run(
        [*pytest, "-n", "2", "--dist", "loadfile", "."],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr  # a failure, not a signal: the controller lived on
    assert "crashed while running" in run.stdout  # xdist's own word, not ours
    said = worker_reports(crash)  # one per worker that died: xdist hands the crashed file to a replacement too
    assert said
    for text in said:
        lines = text.splitlines()
        assert re.fullmatch(
            r"pytest worker gw\d+ died during test_crashing\.py::test_reads_address_zero \(call\)", lines[-1]
        )
        current = max(i for i, line in enumerate(lines) if line.startswith("Current thread"))
        assert lines[current + 1].endswith("in string_at")
    assert len(said) < sum(p.is_dir() for p in crash.iterdir())  # test_other.py's worker reached the end
    assert main(crash, run.returncode) == 1  # make keeps the folder


def test_a_run_whose_workers_all_finished_reports_nothing(tmp_path: Path) -> None:
    for worker in ("gw0", "gw1"):
        (tmp_path / worker).mkdir()
        (tmp_path / worker / "running").write_text(f"{SESSION_END} (reports, coverage), after the last test")
        (tmp_path / worker / "faulthandler.log").write_text("")
    assert worker_reports(tmp_path) == []
    assert main(tmp_path, 1) == 0  # an ordinary failing test: make removes the folder


def test_a_worker_killed_outright_is_named_with_the_test_it_was_in(tmp_path: Path) -> None:
    (tmp_path / "gw3").mkdir()
    (tmp_path / "gw3" / "running").write_text("tests/test_x.py::test_y (call)")
    assert worker_reports(tmp_path) == [
        "faulthandler wrote nothing (a SIGKILL, or an os._exit, leaves no dump)\n"
        "pytest worker gw3 died during tests/test_x.py::test_y (call)"
    ]
