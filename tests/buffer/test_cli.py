"""`edgegw buffer ...` against the file of a running outbox."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
from pathlib import Path

import pytest

from gateway.buffer import cli
from gateway.buffer.config import BufferConfig, Durability
from gateway.buffer.outbox import Outbox
from gateway.records import Lane
from gateway.uplinks.api import DELIVERED, Outcome, Status
from tests.buffer.readings import ns, reading

CFG = BufferConfig(durability=Durability.NORMAL, commit_interval_ms=1)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edgegw")
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["buffer", *argv])


def _run(db: Path, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.run(_args(*argv), db, out)
    return code, out.getvalue()


async def _busy_outbox(db: Path) -> Outbox:
    box = await Outbox.open(db, CFG, ["orion", "mqtt"])
    await box.append_many([reading(i, "urn:ngsi-ld:Sensor:1") for i in range(5)] + [reading(9, "alarm", Lane.ALERT)])
    batch = await box.read("orion", 3)
    await box.ack("orion", batch, [DELIVERED, Outcome(Status.REJECTED, "422 Unprocessable: bad unit"), DELIVERED])
    return box


async def test_stats_table_and_json_while_the_gateway_runs(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    box = await _busy_outbox(db)
    code, text = await asyncio.to_thread(_run, db, "stats")
    assert code == 0
    lines = text.splitlines()
    assert lines[0] == f"buffer    {db}"
    assert lines[1] == "rows      6 (alert 1, normal 5, bulk 0)"
    assert lines[4] == "appended  6 in 1 commits"
    assert lines[5] == "dropped   none"
    assert re.fullmatch(r"disk      \d+\.\d MiB free, reserve 8\.0 MiB held", lines[6]), lines[6]
    assert lines[8].split() == ["uplink", "lane", "cursor", "pending", "dead", "letters"]
    assert lines[9].split() == ["mqtt", "alert", "0", "1", "0"]
    assert lines[12].split() == ["orion", "alert", "6", "0", "1"]
    assert lines[13].split() == ["orion", "normal", "2", "3"]
    code, text = await asyncio.to_thread(_run, db, "stats", "--json")
    doc = json.loads(text)
    assert doc["rows_per_lane"] == {"alert": 1, "normal": 5, "bulk": 0}
    assert doc["uplinks"]["mqtt"]["pending"] == {"alert": 1, "normal": 5, "bulk": 0}
    assert doc["dead_letters"] == {"orion": 1}
    assert (doc["disk_full"], doc["reserve_bytes"], doc["salvage"]) == (None, 8 * 1024 * 1024, None)
    await box.close()


async def test_dead_letters_listed_and_requeued_by_id_while_running(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    box = await _busy_outbox(db)
    code, text = await asyncio.to_thread(_run, db, "dead-letters")
    assert code == 0
    header, row = text.splitlines()
    assert header.split()[:5] == ["id", "uplink", "seq", "lane", "entity"]
    assert row.split()[:5] == ["1", "orion", "1", "normal", "urn:ngsi-ld:Sensor:1"]
    assert row.endswith("422 Unprocessable: bad unit")
    code, text = await asyncio.to_thread(_run, db, "dead-letters", "--uplink", "mqtt", "--json")
    assert json.loads(text) == []
    code, text = await asyncio.to_thread(_run, db, "retry-dead-letters", "--id", "1", "--json")
    assert (code, json.loads(text)) == (0, {"requeued": 1, "left": {}})
    # the running gateway notices the other process's write (its writer looks before each call and
    # every second; wait() answers from memory while the uplink keeps up) and delivers the copy to orion only
    assert (await box.stats()).rows == 7
    assert await box.wait("orion", 5)
    assert ns(await box.read("orion", 10)) == [2, 3, 4, 0]
    assert await box.dead_letters() == []
    await box.close()


async def test_a_dead_letter_stored_in_clear_by_an_older_version_is_shown_redacted(tmp_path: Path) -> None:
    db = tmp_path / "buffer.db"
    box = await Outbox.open(db, CFG, ["orion"])
    await box.append_many([reading(1, "urn:ngsi-ld:Sensor:1")])
    batch = await box.read("orion", 1)
    await box.ack("orion", batch, [Outcome(Status.REJECTED, "401: token rejected, X-Auth-Token: eyJ0.eyJ1.c2ln")])
    await box.close()
    for flag in ([], ["--json"]):
        code, text = await asyncio.to_thread(_run, db, "dead-letters", *flag)
        assert code == 0
        assert "eyJ0" not in text
        assert "X-Auth-Token: ***" in text


async def test_a_requeue_is_noticed_while_the_gateway_keeps_committing(tmp_path: Path) -> None:
    # the gateway's own commits must not hide the other process's write from it (SQLite's
    # data_version, read after one of our commits, would already count the other one)
    db = tmp_path / "buffer.db"
    box = await _busy_outbox(db)
    stop = asyncio.Event()
    n = 100

    async def keep_appending() -> None:
        nonlocal n
        while not stop.is_set():
            await box.append(reading(n, "urn:ngsi-ld:Sensor:2"))
            n += 1
            await asyncio.sleep(0.002)

    appending = asyncio.create_task(keep_appending())
    await asyncio.sleep(0.1)
    code, _ = await asyncio.to_thread(_run, db, "retry-dead-letters", "--id", "1")
    assert code == 0
    await asyncio.sleep(0.3)
    stop.set()
    await appending
    assert n > 110  # commits went on meanwhile
    assert (await box.stats()).rows == 6 + (n - 100) + 1
    assert 0 in ns(await box.read("orion", 1000))  # the re-queued copy
    await box.close()


def test_retry_without_a_selection_and_a_missing_file_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "buffer.db"
    assert cli.run(_args("retry-dead-letters"), db) == 2
    assert capsys.readouterr().err == (
        "buffer retry-dead-letters: nothing selected, got no --uplink, --id or --all; name what to re-queue\n"
    )
    assert cli.run(_args("stats"), db) == 1
    assert capsys.readouterr().err == (
        f"buffer: no database at {db}, got a missing file; check gateway.data_dir or start the gateway once\n"
    )
    assert not db.exists()  # the CLI never creates a buffer


async def test_a_retry_that_cannot_be_done_says_why_instead_of_re_queued_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in --uplink or --id, and dead letters of an uplink no longer configured (no cursor reads them:
    the gateway dropped its cursor at its last start), were answered "re-queued 0 dead letters", exit 0."""
    db = tmp_path / "buffer.db"
    box = await Outbox.open(db, CFG, ["orion", "old-platform"])
    await box.append_many([reading(i, "urn:ngsi-ld:Sensor:1") for i in range(4)])
    for uplink in ("orion", "old-platform"):
        batch = await box.read(uplink, 2)
        await box.ack(uplink, batch, [Outcome(Status.REJECTED, "422 Unprocessable: bad unit")] * 2)
    await box.close()
    box = await Outbox.open(db, CFG, ["orion"])  # old-platform removed from the config
    await box.close()

    assert _run(db, "retry-dead-letters", "--uplink", "orlon") == (2, "")
    assert capsys.readouterr().err == (
        "buffer retry-dead-letters: no uplink 'orlon' in this buffer, got no cursor and no dead letter of it; "
        "uplinks: orion\n"
    )
    assert _run(db, "retry-dead-letters", "--id", "1", "--id", "999") == (2, "")
    assert capsys.readouterr().err == (
        "buffer retry-dead-letters: no dead letter with id 999, got none; nothing re-queued "
        "(edgegw buffer dead-letters lists them)\n"
    )
    assert _run(db, "retry-dead-letters", "--all", "--json") == (
        1,
        '{\n  "requeued": 2,\n  "left": {\n    "old-platform": 2\n  }\n}\n',
    )
    assert capsys.readouterr().err == (
        "buffer retry-dead-letters: left 2 dead letters of uplink 'old-platform', got an uplink no longer "
        "configured (no cursor reads its rows); configure it again to re-queue them\n"
    )
    assert [d["uplink"] for d in json.loads(_run(db, "dead-letters", "--json")[1])] == ["old-platform"] * 2
