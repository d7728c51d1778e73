"""The floor under the race workload's CPU a reading: bare forwarders on the same rig (issue 18).

The gateway's CPU a reading at 500/s (bench/race_bench.py) includes what any Python process pays
on this machine just to take a QoS 1 message from one local broker and hand it to another. This
runs the race's rig (both mosquittos, the paced publisher, the counter) with a forwarder in the
gateway's place that does nothing else, and prints the same CPU figure for it:

- `client`: the gateway's own MQTT client (gateway/mqtt/client.py) on uvloop, both ways: the
  messages of one socket read are published to the uplink broker in one write, and acknowledged
  to the source broker once the uplink's PUBACKs for them are in (at-least-once, as the gateway,
  but nothing is stored, mapped, checked or converted; the payload goes through unchanged);
- `batched`: the same, but what came within 10 ms goes out as one batch, one write to the uplink
  broker and one acknowledgement write to the source broker, as the gateway's delivery wake-up
  and commit groups batch them (the gateway's own I/O pattern at 500/s, minus the commit's wait);
- `paho`: paho-mqtt's threaded client, the ecosystem's usual choice, publishing from its
  `on_message` (paho acknowledges the source message when the callback returns, before the uplink
  has it: weaker than the gateway, so a lower bound);
- `gateway`: the gateway itself, as race_bench.py runs it, for the same-minute comparison.

    .venv/bin/python bench/race_floor.py [--rate 500] [--seconds 20] [--runs 3]
                                         [--only client,batched,paho,gateway] [--cpus 0]

`--cpus 0` pins the forwarder (or the gateway) alone, as race_bench.py does. Runs alternate the
forwarders round by round (the machine is noisy) and print one line a run, then the medians.
Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import race_bench as rb  # noqa: E402

PY = rb.PY


# --- the forwarders (run as `race_floor.py client|batched|paho <src port> <dst port>`) ----------------


def run_client_forwarder(src: int, dst: int, linger_s: float = 0.0) -> None:
    import uvloop

    from gateway.mqtt.client import ClientSettings, MqttClient
    from gateway.mqtt.packets import Publish

    async def main() -> None:
        up = MqttClient(ClientSettings(host="127.0.0.1", port=dst, client_id="floor-out", max_inflight=1000))
        await up.connect()
        burst: list[Publish] = []
        order: list[tuple[list[int], asyncio.Future[Any]]] = []  # per read: its packet ids, its PUBACKs
        running: set[asyncio.Task[None]] = set()

        def on_publish(msg: Publish) -> None:
            burst.append(msg)

        def ack_done_prefix(_: object = None) -> None:
            # source PUBACKs go in arrival order: the reads whose uplink PUBACKs are all in, from the front
            ids: list[int] = []
            while order and order[0][1].done():
                ids.extend(order.pop(0)[0])
            src_client.ack(ids)

        async def forward(msgs: list[Publish], done: asyncio.Future[Any]) -> None:
            up.cork()
            futs = []
            for m in msgs:
                dev = m.topic.split(b"/")[1].decode()
                futs.append(await up.publish(f"/race/{dev}/attrs", m.payload, qos=1))
            up.uncork()
            await asyncio.gather(*futs)
            done.set_result(None)

        lingering = [False]

        def flush() -> None:
            if linger_s:
                # the gateway's pattern: what came within linger_s goes out as one batch (one write)
                if not lingering[0]:
                    lingering[0] = True
                    loop.call_later(linger_s, send)
                return
            send()

        def send() -> None:
            lingering[0] = False
            msgs = burst.copy()
            burst.clear()
            done: asyncio.Future[Any] = loop.create_future()
            done.add_done_callback(ack_done_prefix)
            order.append(([m.packet_id for m in msgs if m.qos], done))
            task = loop.create_task(forward(msgs, done))
            running.add(task)
            task.add_done_callback(running.discard)

        loop = asyncio.get_running_loop()
        src_client = MqttClient(
            ClientSettings(
                host="127.0.0.1", port=src, client_id="floor-in", session_expiry_s=3600, receive_maximum=1000
            ),
            on_publish=on_publish,
            on_handed_out=flush,
        )
        await src_client.connect()
        await src_client.subscribe(["race/+/up"], timeout=10)
        await asyncio.shield(src_client.lost)

    uvloop.run(main())


def run_paho_forwarder(src: int, dst: int) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    up = paho.Client(CallbackAPIVersion.VERSION2, client_id="floor-out-paho")
    up.max_inflight_messages_set(1000)
    up.connect("127.0.0.1", dst)
    up.loop_start()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        dev = msg.topic.split("/")[1]
        up.publish(f"/race/{dev}/attrs", msg.payload, qos=1)

    down = paho.Client(CallbackAPIVersion.VERSION2, client_id="floor-in-paho", clean_session=False)
    down.max_inflight_messages_set(1000)
    down.on_message = on_message
    down.on_connect = lambda c, *_: c.subscribe("race/+/up", qos=1)
    down.connect("127.0.0.1", src)
    down.loop_forever()


# --- the bench --------------------------------------------------------------------------------------


def one_run(kind: str, rate: float, seconds: float, cpus: str | None) -> dict[str, Any]:
    args = argparse.Namespace(cpus=cpus, buffer=[], uplink=["start_delay_max_s = 0"], stock_brokers=False)
    with rb.rig(args) as r:
        r.start_counter()
        if kind == "gateway":
            r.start_gateway()
        else:
            cmd = [PY, __file__, kind, str(r.src.port), str(r.dst.port)]
            if cpus is not None:
                cmd = ["taskset", "-c", cpus, *cmd]  # taskset execs the command: the same pid
            with (r.work / "forwarder.log").open("ab") as log:
                r.gw = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log)
        r.wait_subscribed()
        time.sleep(1.0)
        pid = r.gw_pid()
        s0 = rb.proc_stat(pid)
        pub = rb.publisher(r.src.port, rate=rate, seconds=seconds, start_seq=0)
        n, _ = rb.publisher_result(pub)
        complete = rb.wait_for(lambda: r.counter_n[0] >= n, 10.0)
        s1 = rb.proc_stat(pid)
        doc = r.stop_counter()
        t = rb.tally(doc, rb.sent_keys(n, 0))
        lat = sorted(x * 1000 for x in doc["lat"])
        return {
            "kind": kind,
            "sent": n,
            "lost": t["lost"],
            "complete": complete,
            "cpu_us": (s1.cpu_s - s0.cpu_s) / n * 1e6,
            "sys_us": (s1.sys_s - s0.sys_s) / n * 1e6,
            "p99_ms": lat[int(0.99 * (len(lat) - 1))] if lat else float("nan"),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="client,batched,paho,gateway")
    ap.add_argument("--cpus", default=None, help="pin the forwarder or gateway with taskset -c CPUS")
    args = ap.parse_args()
    kinds = args.only.split(",")
    results: dict[str, list[float]] = {k: [] for k in kinds}
    for i in range(args.runs):
        for kind in kinds:
            res = one_run(kind, args.rate, args.seconds, args.cpus)
            results[kind].append(res["cpu_us"])
            print(
                f"run {i + 1} {kind:8s} {time.strftime('%H:%M')} sent {res['sent']} lost {res['lost']} "
                f"CPU {res['cpu_us']:.1f} µs/message (system {res['sys_us']:.1f}) p99 {res['p99_ms']:.2f} ms"
                + ("" if res["complete"] else " (not all delivered within 10 s of the last send)"),
                flush=True,
            )
    for kind, figures in results.items():
        print(
            f"median {kind:8s} {statistics.median(figures):.1f} µs/message over {len(figures)} runs at {args.rate:g}/s"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("client", "batched", "paho"):
        src_port, dst_port = int(sys.argv[2]), int(sys.argv[3])
        if sys.argv[1] == "paho":
            run_paho_forwarder(src_port, dst_port)
        else:
            run_client_forwarder(src_port, dst_port, linger_s=0.010 if sys.argv[1] == "batched" else 0.0)
    else:
        main()
