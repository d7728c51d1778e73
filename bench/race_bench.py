"""The race workload (issue 18): 100 MQTT devices → mosquitto → gateway → mosquitto → a counter of every (device, seq).

Everything runs on loopback, each part in its own process: a source mosquitto and an uplink
mosquitto (tests/support/mosquitto.py), the gateway as `python -m gateway run --config …` (the mqtt
adapter subscribing at QoS 1, `full` durability, the mqtt uplink publishing at QoS 1), a publisher
(paho, 100 devices, JSON at QoS 1 at a fixed rate, each message stamped with its device, seq and
send time) and a counter (paho, persistent session on the uplink broker) that notes each
(device, seq), duplicates and the latency from the publisher's stamp to its arrival.

Figures of the gateway process, from /proc/<pid>: CPU (utime + stime) per reading, peak and final
RSS, bytes written per reading (/proc/<pid>/io write_bytes) and, where the data directory is on a
block device, that device's written sectors (/proc/diskstats; other processes' writes count too).

    .venv/bin/python bench/race_bench.py [--only ceiling,rates,backlog,kill,outage] [--rates 10,500,2000,5000]
                                         [--seconds 20] [--backlog 120000] [--outage-s 60] [--cpus 0]
                                         [--stock-brokers]

`--cpus 0` pins the gateway (only) with `taskset -c 0`, as on a one-core appliance; the brokers,
publisher and counter stay free. The brokers answer without Nagle's algorithm (`set_tcp_nodelay
true`, as a tuned broker does); `--stock-brokers` leaves it on, as a stock mosquitto has it. The
machine is shared and noisy: run before/after alternately and compare medians. Prints one line per figure and a JSON summary last.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.mosquitto import MosquittoBroker  # noqa: E402

DEVICES = 100
TOPIC = "race/{dev}/up"
PY = str(ROOT / ".venv" / "bin" / "python")


# --- the publisher and the counter (run as `race_bench.py publisher|counter …`) -------------------


def run_publisher(port: int, rate: float, seconds: float, total: int, start_seq: int) -> None:
    """Publish round-robin over DEVICES at `rate`/s (0: as fast as paho goes) for `seconds` or `total` messages.

    Prints `sent <n> <elapsed>` at the end; on SIGTERM stops at once and prints the same."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"race-pub-{os.getpid()}", clean_session=True)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sent = 0
    t0 = time.monotonic()
    infos = []
    while not stop.is_set():
        now = time.monotonic()
        if seconds and now - t0 >= seconds:
            break
        if total and sent >= total:
            break
        due = int((now - t0) * rate) + 1 if rate else sent + 100
        if total:
            due = min(due, total)
        while sent < due:
            seq = start_seq + sent // DEVICES
            dev = f"d{sent % DEVICES:03d}"
            body = b'{"dev":"%s","seq":%d,"t":%.6f,"level":%.3f}' % (dev.encode(), seq, time.time(), 1.5)
            infos.append(client.publish(TOPIC.format(dev=dev), body, qos=1))
            sent += 1
        if rate:
            time.sleep(max(0.0, min(0.01, t0 + sent / rate - time.monotonic())))
        else:
            # paho queues without bound: wait for the acks of all but the last few thousand
            while len(infos) > 5000:
                infos.pop(0).wait_for_publish(5)
    for info in infos[-1000:]:
        with contextlib.suppress(Exception):
            info.wait_for_publish(10)
    elapsed = time.monotonic() - t0
    client.loop_stop()
    client.disconnect()
    print(f"sent {sent} {elapsed:.3f}", flush=True)


def run_counter(port: int, out: Path) -> None:
    """Count (device, seq) arriving at the uplink broker until SIGTERM, then write the tallies to `out`.

    Prints `n <unique> <total>` every 0.2 s so the bench can watch progress."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    seen: dict[tuple[str, int], int] = {}
    lat: list[float] = []
    arrivals: list[float] = []
    lock = threading.Lock()
    total = [0]

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        now = time.time()
        doc = json.loads(msg.payload)
        items = doc if isinstance(doc, list) else [doc]
        with lock:
            for m in items:
                key = (m["dev"], int(m["seq"]))
                seen[key] = seen.get(key, 0) + 1
                total[0] += 1
                lat.append(now - float(m["t"]))
                arrivals.append(now)

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="race-counter", clean_session=False)
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe("/race/#", qos=1)
    client.connect("127.0.0.1", port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # our own network loop: paho's loop_start waits whole seconds before reconnecting, and the
    # counter must not be the one slow to come back after an outage of the uplink broker
    next_print = 0.0
    while not stop.is_set():
        if client.loop(0.05) != paho.MQTT_ERR_SUCCESS:
            try:
                client.reconnect()
            except OSError:
                time.sleep(0.05)
        if time.monotonic() >= next_print:
            next_print = time.monotonic() + 0.2
            with lock:
                print(f"n {len(seen)} {total[0]}", flush=True)
    with lock:
        out.write_text(
            json.dumps(
                {
                    "unique": len(seen),
                    "total": total[0],
                    "seen": [[d, s, n] for (d, s), n in seen.items()],
                    "lat": lat,
                    "arrivals": arrivals,
                }
            )
        )


# --- the bench ------------------------------------------------------------------------------


@dataclass
class ProcStat:
    cpu_s: float
    sys_s: float  # the kernel's share of cpu_s (sockets, epoll, futex wake-ups, fsync)
    write_bytes: int
    rss_kb: int
    hwm_kb: int


def proc_stat(pid: int) -> ProcStat:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick
    sys_s = int(fields[12]) / tick
    wb = 0
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            wb = int(line.split()[1])
    rss = hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return ProcStat(cpu, sys_s, wb, rss, hwm)


def block_device(path: Path) -> str | None:
    """The /proc/diskstats name of the device holding `path`, or None (tmpfs, overlay on nothing)."""
    dev = os.stat(path).st_dev
    major, minor = os.major(dev), os.minor(dev)
    for line in Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        if int(f[0]) == major and int(f[1]) == minor:
            return f[2]
    return None


def device_written(name: str | None) -> int:
    if name is None:
        return 0
    for line in Path("/proc/diskstats").read_text().splitlines():
        f = line.split()
        if f[2] == name:
            return int(f[9]) * 512
    return 0


def gateway_toml(data_dir: Path, src: int, dst: int, buffer: str = "", uplink: str = "") -> str:
    return f"""
[gateway]
id = "race-gw"
data_dir = "{data_dir}"
log_level = "warning"
log_format = "text"

[buffer]
durability = "full"
{buffer}

[[adapters]]
name = "race"
type = "mqtt"
host = "127.0.0.1"
port = {src}
client_id = "race-gw-in"
max_inflight = 1000

[[adapters.subscriptions]]
topic = "race/+/up"
entity_id = "urn:ngsi-ld:Device:{{topic[1]}}"
entity_type = "Device"
controlled_property = ["level"]

[[adapters.subscriptions.attributes]]
path = "dev"
name = "dev"
type = "Text"

[[adapters.subscriptions.attributes]]
path = "seq"
name = "seq"

[[adapters.subscriptions.attributes]]
path = "t"
name = "t"

[[adapters.subscriptions.attributes]]
path = "level"
name = "level"

[[uplinks]]
name = "up"
type = "mqtt"
host = "127.0.0.1"
port = {dst}
client_id = "race-gw-out"
format = "iota-json"
apikey = "race"
max_inflight = 1000
{uplink}
"""


@dataclass
class Rig:
    work: Path
    cpus: str | None
    buffer: str = ""
    uplink: str = ""
    tcp_nodelay: bool = True  # False: both brokers as stock mosquitto (Nagle's algorithm on)
    src: MosquittoBroker = field(init=False)
    dst: MosquittoBroker = field(init=False)
    gw: subprocess.Popen[bytes] | None = None
    counter: subprocess.Popen[str] | None = None
    counter_n: list[int] = field(default_factory=lambda: [0, 0])
    counter_out: Path = field(init=False)
    data: Path = field(init=False)
    config: Path = field(init=False)
    device: str | None = None

    def __post_init__(self) -> None:
        self.src = MosquittoBroker(self.work / "src", tcp_nodelay=self.tcp_nodelay)
        self.dst = MosquittoBroker(self.work / "dst", tcp_nodelay=self.tcp_nodelay)
        self.src.start()
        self.dst.start()
        self.data = self.work / "data"
        self.data.mkdir()
        self.config = self.work / "gateway.toml"
        self.config.write_text(gateway_toml(self.data, self.src.port, self.dst.port, self.buffer, self.uplink))
        self.counter_out = self.work / "counter.json"
        self.device = block_device(self.data)

    def start_gateway(self) -> None:
        cmd = [PY, "-m", "gateway", "run", "--config", str(self.config)]
        if self.cpus is not None:
            cmd = ["taskset", "-c", self.cpus, *cmd]
        log = (self.work / "gateway.log").open("ab")
        self.gw = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log)
        time.sleep(0.1)

    def wait_subscribed(self, timeout: float = 20.0) -> None:
        """Until the gateway's adapter session exists on the source broker (a probe message arrives at the counter)."""
        deadline = time.monotonic() + timeout
        before = self.counter_n[0]
        seq = 10_000_000 + int(time.time() * 10) % 1_000_000
        while time.monotonic() < deadline:
            publish_once(self.src.port, "probe", seq)
            t_end = time.monotonic() + 0.5
            while time.monotonic() < t_end:
                if self.counter_n[0] > before:
                    return
                time.sleep(0.02)
            seq += 1
        raise RuntimeError(f"gateway did not deliver a probe within {timeout} s; see {self.work}/gateway.log")

    def gw_pid(self) -> int:
        assert self.gw is not None
        return self.gw.pid  # taskset execs the command: the same pid

    def stop_gateway(self, sig: int = signal.SIGTERM) -> None:
        if self.gw is None:
            return
        self.gw.send_signal(sig)
        try:
            self.gw.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.gw.kill()
            self.gw.wait()
        self.gw = None

    def start_counter(self) -> None:
        self.counter_n = [0, 0]
        self.counter = subprocess.Popen(
            [PY, __file__, "counter", str(self.dst.port), str(self.counter_out)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )

        def follow(proc: subprocess.Popen[str], n: list[int]) -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                parts = line.split()
                if parts and parts[0] == "n":
                    n[0], n[1] = int(parts[1]), int(parts[2])

        threading.Thread(target=follow, args=(self.counter, self.counter_n), daemon=True).start()
        time.sleep(0.5)

    def stop_counter(self) -> dict[str, Any]:
        assert self.counter is not None
        self.counter.send_signal(signal.SIGTERM)
        self.counter.wait(timeout=60)
        self.counter = None
        doc: dict[str, Any] = json.loads(self.counter_out.read_text())
        return doc

    def close(self) -> None:
        self.stop_gateway()
        if self.counter is not None:
            self.counter.kill()
        self.src.stop()
        self.dst.stop()


def start_again(broker: MosquittoBroker) -> None:
    """Start a stopped broker on its port; a client's connect attempt may hold the port for a moment
    (on loopback a connect to a closed port in the ephemeral range can connect to itself)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            broker.start()
            return
        except RuntimeError:
            broker.proc = None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def publish_once(port: int, dev: str, seq: int) -> None:
    import paho.mqtt.publish as publish

    body = json.dumps({"dev": dev, "seq": seq, "t": time.time(), "level": 0.0})
    publish.single(TOPIC.format(dev=dev), body, qos=1, hostname="127.0.0.1", port=port)


def publisher(port: int, *, rate: float, seconds: float = 0, total: int = 0, start_seq: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, __file__, "publisher", str(port), str(rate), str(seconds), str(total), str(start_seq)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def publisher_result(proc: subprocess.Popen[str]) -> tuple[int, float]:
    out, _ = proc.communicate(timeout=600)
    for line in out.splitlines():
        if line.startswith("sent "):
            _, n, t = line.split()
            return int(n), float(t)
    raise RuntimeError(f"publisher printed no result: {out!r}")


class Sampler:
    """Samples the gateway's RSS every 0.1 s (peak and last)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self.last_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            with contextlib.suppress(OSError, ValueError):
                st = proc_stat(self.pid)
                self.last_kb = st.rss_kb
                self.peak_kb = max(self.peak_kb, st.rss_kb)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def wait_for(cond: Any, timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


@contextlib.contextmanager
def rig(args: argparse.Namespace) -> Iterator[Rig]:
    work = Path(tempfile.mkdtemp(prefix="race-", dir=os.environ.get("RACE_TMP")))
    r = Rig(work, args.cpus, "\n".join(args.buffer), "\n".join(args.uplink), tcp_nodelay=not args.stock_brokers)
    try:
        yield r
    finally:
        r.close()
        if not os.environ.get("RACE_KEEP"):
            shutil.rmtree(work, ignore_errors=True)


def tally(doc: dict[str, Any], sent: dict[str, set[int]] | None = None) -> dict[str, int]:
    dups = sum(n - 1 for d, _, n in doc["seen"] if not d.startswith("probe"))
    got = {(d, s) for d, s, _ in doc["seen"] if not d.startswith("probe")}
    lost = 0
    if sent is not None:
        for dev, seqs in sent.items():
            lost += sum(1 for s in seqs if (dev, s) not in got)
    return {"unique": len(got), "duplicates": dups, "lost": lost}


def sent_keys(n: int, start_seq: int) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for i in range(n):
        out.setdefault(f"d{i % DEVICES:03d}", set()).add(start_seq + i // DEVICES)
    return out


# --- scenarios ------------------------------------------------------------------------------


def scenario_ceiling(args: argparse.Namespace) -> dict[str, Any]:
    """The publisher alone against the source broker: the most it can send (no subscriber)."""
    work = Path(tempfile.mkdtemp(prefix="race-ceil-"))
    broker = MosquittoBroker(work / "src")
    broker.start()
    try:
        n, t = publisher_result(publisher(broker.port, rate=0, seconds=5, start_seq=0))
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    rate = n / t
    print(f"publisher ceiling alone: {rate:,.0f} msg/s", flush=True)
    return {"publisher_ceiling": round(rate)}


def scenario_rate(args: argparse.Namespace, rate: float) -> dict[str, Any]:
    with rig(args) as r:
        r.start_counter()
        r.start_gateway()
        r.wait_subscribed()
        time.sleep(1.0)
        pid = r.gw_pid()
        s0, d0 = proc_stat(pid), device_written(r.device)
        sampler = Sampler(pid)
        seconds = args.seconds
        base = r.counter_n[0]
        pub = publisher(r.src.port, rate=rate, seconds=seconds, start_seq=0)
        n, elapsed = publisher_result(pub)
        ok = wait_for(lambda: r.counter_n[0] - base >= n, 10.0)
        s1, d1 = proc_stat(pid), device_written(r.device)
        sampler.stop()
        doc = r.stop_counter()
        t = tally(doc, sent_keys(n, 0))
        lat = [x * 1000 for x in doc["lat"]]
        delivered = t["unique"] / n if n else 0.0
        cpu_us = (s1.cpu_s - s0.cpu_s) / n * 1e6
        wpr = (s1.write_bytes - s0.write_bytes) / n
        dev = (d1 - d0) / n if r.device else None
        res = {
            "rate": rate,
            "sent": n,
            "sent_rate": round(n / elapsed),
            "delivered_pct": round(100 * delivered, 3),
            "held": ok and delivered >= 0.999,
            "lost": t["lost"],
            "duplicates": t["duplicates"],
            "p50_ms": round(pct(lat, 50), 2),
            "p99_ms": round(pct(lat, 99), 2),
            "cpu_us_per_reading": round(cpu_us, 1),
            "cpu_pct_of_core": round(100 * (s1.cpu_s - s0.cpu_s) / elapsed, 1),
            "sys_us_per_reading": round((s1.sys_s - s0.sys_s) / n * 1e6, 1),
            "write_bytes_per_reading": round(wpr),
            "device_bytes_per_reading": None if dev is None else round(dev),
            "gb_per_day": round(wpr * rate * 86400 / 1e9, 2),
            "peak_rss_mb": round(sampler.peak_kb / 1024, 1),
        }
        print(
            f"rate {rate:>6,.0f}/s: sent {n} at {res['sent_rate']}/s, delivered {res['delivered_pct']} % "
            f"(lost {t['lost']}, dup {t['duplicates']}), p50 {res['p50_ms']} ms p99 {res['p99_ms']} ms, "
            f"CPU {res['cpu_us_per_reading']} µs/reading (system {res['sys_us_per_reading']}; "
            f"{res['cpu_pct_of_core']} % of a core), "
            f"written {res['write_bytes_per_reading']} B/reading (device {res['device_bytes_per_reading']}), "
            f"{res['gb_per_day']} GB/day, peak RSS {res['peak_rss_mb']} MB",
            flush=True,
        )
        return res


def scenario_backlog(args: argparse.Namespace) -> dict[str, Any]:
    """A backlog queued in the source broker while the gateway was away, then drained."""
    with rig(args) as r:
        r.start_counter()
        r.start_gateway()
        r.wait_subscribed()
        r.stop_gateway()  # the adapter's persistent session stays on the source broker
        n, _ = publisher_result(publisher(r.src.port, rate=0, total=args.backlog, start_seq=0))
        base = r.counter_n[0]
        t0, wall0 = time.monotonic(), time.time()
        r.start_gateway()
        pid = r.gw_pid()
        s0, d0 = proc_stat(pid), device_written(r.device)
        sampler = Sampler(pid)
        wait_for(lambda: r.counter_n[0] - base >= n, 300.0, 0.01)
        t1 = time.monotonic()
        s1, d1 = proc_stat(pid), device_written(r.device)
        time.sleep(10.0)  # memory after the drain (the gateway gives it back within its 5 s status interval)
        after = proc_stat(pid).rss_kb
        sampler.stop()
        doc = r.stop_counter()
        t = tally(doc, sent_keys(n, 0))
        # from the first reading delivered to the last: the pipeline's own rate, without the start-up and
        # the random start delay a fleet needs (start_delay_max_s, up to 5 s by default)
        arrived = sorted(a for a in doc["arrivals"] if a >= wall0)
        steady = (len(arrived) - 1) / (arrived[-1] - arrived[0]) if len(arrived) > 1 else 0.0
        res = {
            "backlog": n,
            "drain_per_s": round(n / (t1 - t0)),
            "first_delivery_s": round(arrived[0] - wall0, 2) if arrived else None,
            "steady_drain_per_s": round(steady),
            "lost": t["lost"],
            "duplicates": t["duplicates"],
            "cpu_us_per_reading": round((s1.cpu_s - s0.cpu_s) / n * 1e6, 1),
            "write_bytes_per_reading": round((s1.write_bytes - s0.write_bytes) / n),
            "device_bytes_per_reading": round((d1 - d0) / n) if r.device else None,
            "peak_rss_mb": round(sampler.peak_kb / 1024, 1),
            "rss_10s_after_mb": round(after / 1024, 1),
        }
        print(
            f"backlog {n}: drained at {res['drain_per_s']:,}/s (incl. start-up; first delivery after "
            f"{res['first_delivery_s']} s, then {res['steady_drain_per_s']:,}/s), lost {t['lost']}, "
            f"dup {t['duplicates']}, CPU {res['cpu_us_per_reading']} µs/reading, written "
            f"{res['write_bytes_per_reading']} B/reading, peak RSS {res['peak_rss_mb']} MB, "
            f"10 s after {res['rss_10s_after_mb']} MB",
            flush=True,
        )
        return res


def scenario_kill(args: argparse.Namespace) -> dict[str, Any]:
    """kill -9 of the gateway mid-stream at 500/s, restarted 1 s later; lost and duplicates."""
    with rig(args) as r:
        r.start_counter()
        r.start_gateway()
        r.wait_subscribed()
        base = r.counter_n[0]
        pub = publisher(r.src.port, rate=500, seconds=20, start_seq=0)
        time.sleep(8.0)
        r.stop_gateway(signal.SIGKILL)
        time.sleep(1.0)
        r.start_gateway()
        n, _ = publisher_result(pub)
        wait_for(lambda: r.counter_n[0] - base >= n, 30.0)
        time.sleep(1.0)
        doc = r.stop_counter()
        t = tally(doc, sent_keys(n, 0))
        print(f"kill -9 at 500/s: sent {n}, lost {t['lost']}, duplicates {t['duplicates']}", flush=True)
        return {"sent": n, **t}


def scenario_outage(args: argparse.Namespace) -> dict[str, Any]:
    """The uplink broker down `--outage-s` s at 500/s: time to first delivery and to drained once it is back."""
    with rig(args) as r:
        r.start_counter()
        r.start_gateway()
        r.wait_subscribed()
        pid = r.gw_pid()
        sampler = Sampler(pid)
        base = r.counter_n[0]
        total_s = args.outage_s + 30
        pub = publisher(r.src.port, rate=500, seconds=total_s, start_seq=0)
        time.sleep(5.0)
        r.dst.stop()
        down = time.time()
        time.sleep(args.outage_s)
        start_again(r.dst)
        back = time.time()
        n, _ = publisher_result(pub)
        wait_for(lambda: r.counter_n[0] - base >= n, 120.0)
        sampler.stop()
        doc = r.stop_counter()
        t = tally(doc, sent_keys(n, 0))
        # The first delivery is the first reading published after the broker went down: only the
        # gateway can have delivered it, once the broker was back. Earlier ones may arrive first
        # from the broker's own persistence (the gateway had published them, the counter had not
        # had them yet), which says nothing about when the gateway resumed.
        after = sorted(a for a, lat in zip(doc["arrivals"], doc["lat"], strict=True) if a >= back and a - lat > down)
        first = after[0] - back if after else float("nan")
        # drained: the last reading published before the broker came back has arrived
        before = [a for a, lat in zip(doc["arrivals"], doc["lat"], strict=True) if a - lat < back]
        drained = max(before) - back if before else float("nan")
        res = {
            "outage_s": args.outage_s,
            "sent": n,
            **t,
            "first_delivery_s": round(first, 2),
            "drained_s": round(drained, 2),
            "peak_rss_mb": round(sampler.peak_kb / 1024, 1),
            "rss_end_mb": round(sampler.last_kb / 1024, 1),
        }
        print(
            f"outage {args.outage_s} s at 500/s: first delivery {res['first_delivery_s']} s after the broker was back, "
            f"drained {res['drained_s']} s after, lost {t['lost']}, dup {t['duplicates']}, "
            f"peak RSS {res['peak_rss_mb']} MB (end {res['rss_end_mb']} MB)",
            flush=True,
        )
        return res


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "publisher":
        port, rate, seconds, total, start = sys.argv[2:7]
        run_publisher(int(port), float(rate), float(seconds), int(total), int(start))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "counter":
        run_counter(int(sys.argv[2]), Path(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="ceiling,rates,backlog,kill,outage")
    ap.add_argument("--rates", default="10,500,2000,5000")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--backlog", type=int, default=120_000)
    ap.add_argument("--outage-s", type=float, default=60.0)
    ap.add_argument("--cpus", default=None, help="pin the gateway with taskset -c CPUS")
    ap.add_argument("--buffer", action="append", default=[], help="a [buffer] line, e.g. commit_interval_ms = 20")
    ap.add_argument(
        "--uplink",
        action="append",
        default=[],
        help="a line for the uplink, e.g. start_delay_max_s = 0 (the drain without a fleet's random start delay)",
    )
    ap.add_argument(
        "--stock-brokers",
        action="store_true",
        help="both mosquittos as installed, Nagle's algorithm on (the default sets set_tcp_nodelay true)",
    )
    args = ap.parse_args()
    parts = set(args.only.split(","))
    with contextlib.suppress(OSError):
        print(f"load average at start: {os.getloadavg()}, {platform.python_version()}, cpus {args.cpus}", flush=True)
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": args.cpus}
    if "ceiling" in parts:
        out.update(scenario_ceiling(args))
    if "rates" in parts:
        out["rates"] = [scenario_rate(args, float(x)) for x in args.rates.split(",")]
    if "backlog" in parts:
        out["backlog"] = scenario_backlog(args)
    if "kill" in parts:
        out["kill"] = scenario_kill(args)
    if "outage" in parts:
        out["outage"] = scenario_outage(args)
    print(f"load average at end: {os.getloadavg()}", flush=True)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
