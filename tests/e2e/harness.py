"""Runs the real gateway as a subprocess and receives what it delivers, for end-to-end tests."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[2]


class GatewayProcess:
    """`python -m gateway run` on a config written into `workdir`; logs go to workdir/gateway-N.log."""

    def __init__(self, workdir: Path, config: str) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.config_path = workdir / "gateway.toml"
        self.write_config(config)
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def write_config(self, config: str) -> None:
        self.config_path.write_text(config.replace("@DATA_DIR@", str(self.data_dir)))

    def start(self) -> None:
        assert self.proc is None
        self.runs += 1
        with open(self.workdir / f"gateway-{self.runs}.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "--config", str(self.config_path)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    async def terminate(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took)."""
        assert self.proc is not None
        # a SIGTERM that lands while Python is still importing ends the process the default way
        # (nothing to flush yet): measure the gateway's own shutdown, once it has started
        await self.started(timeout)
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        while self.proc.poll() is None:
            if time.monotonic() - t0 > timeout:
                self.proc.kill()
                raise AssertionError(f"gateway ignored SIGTERM for {timeout}s; log: {self.log_tail()}")
            await asyncio.sleep(0.02)
        code, self.proc = self.proc.returncode, None
        return code, time.monotonic() - t0

    async def started(self, timeout: float = 30.0) -> None:
        """Until this run says it has started: its buffer open (made, on a first run) and the seqs a killed run
        reserved logged."""
        deadline = time.monotonic() + timeout
        while " started: " not in self.log_tail(1_000_000):
            if time.monotonic() > deadline or self.proc is None or self.proc.poll() is not None:
                raise AssertionError(f"gateway did not start; log: {self.log_tail()}")
            await asyncio.sleep(0.02)

    def hup(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 3000) -> str:
        path = self.workdir / f"gateway-{self.runs}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def logs(self) -> str:
        return "".join((self.workdir / f"gateway-{i}.log").read_text(errors="replace") for i in range(1, self.runs + 1))

    def status(self) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads((self.data_dir / "status.json").read_text())
            return doc
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def committed_max_seq(self) -> int:
        """The highest sequence number the buffer ever committed (AUTOINCREMENT keeps it after deletes)."""
        conn = sqlite3.connect(self.data_dir / "buffer.db", timeout=10)
        try:
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
            return int(row[0]) if row else 0
        finally:
            conn.close()

    def committed_seqs(self) -> set[int]:
        """Every seq the buffer committed: 1 to committed_max_seq, less those a killed run had reserved
        and not stored (the buffer logs them at the next start, and never uses them)."""
        seqs = set(range(1, self.committed_max_seq() + 1))
        for first, last in re.findall(r"buffer: seqs (\d+)-(\d+) were reserved by the last run", self.logs()):
            seqs -= set(range(int(first), int(last) + 1))
        return seqs

    def stop_now(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class Receiver:
    """A persistent-session QoS1 subscriber collecting the `ngsi-v2` envelopes a gateway publishes."""

    def __init__(self, port: int, topic: str = "edgegw/#", client_id: str = "e2e-receiver") -> None:
        self.lock = threading.Lock()
        self.seqs: list[int] = []  # every sequence number received, duplicates included, in arrival order
        self.by_entity: dict[str, list[int]] = defaultdict(list)
        self.messages = 0
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if msg.topic.endswith("/status"):
            return
        doc = json.loads(msg.payload)
        with self.lock:
            self.messages += 1
            for seq, entity in zip(doc["seq"], doc["entities"], strict=True):
                self.seqs.append(seq)
                self.by_entity[entity["id"]].append(seq)

    def distinct(self) -> set[int]:
        with self.lock:
            return set(self.seqs)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def first_arrivals(seqs: list[int]) -> list[int]:
    seen: set[int] = set()
    out = []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


async def wait_until(predicate: Any, timeout: float, what: str, gw: GatewayProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}"
                + (f"; gateway log tail:\n{gw.log_tail()}" if gw else "")
            )
        await asyncio.sleep(0.05)
