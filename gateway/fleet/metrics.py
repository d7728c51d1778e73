"""Prometheus metrics rendered from the status document, and the small HTTP server that serves them.

There is one source: `Gateway.status()` builds the document `edgegw status` prints, and
`/metrics` renders that same document through `StatusCollector` (prometheus-client's custom
collector API) at each scrape. Counters are the gateway's own since its start; names follow the
Prometheus conventions (`edgegw_` prefix, base units, `_total` for counters).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.fleet.config import MetricsConfig

__all__ = ["MetricsServer", "StatusCollector", "render"]

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StatusCollector(Collector):
    """The metric families of one status document."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = doc

    def collect(self) -> Iterator[Metric]:
        doc = self.doc
        buffer = doc.get("buffer") or {}
        fleet = doc.get("fleet") or {}

        emitted = CounterMetricFamily("edgegw_readings_in", "Readings emitted by each adapter", labels=["adapter"])
        invalid = CounterMetricFamily(
            "edgegw_readings_invalid", "Readings refused by Orion's rules before storing", labels=["adapter"]
        )
        restarts = CounterMetricFamily(
            "edgegw_adapter_restarts", "Adapter restarts after a failure", labels=["adapter"]
        )
        up = GaugeMetricFamily("edgegw_adapter_up", "1 when the adapter is running", labels=["adapter"])
        offline = GaugeMetricFamily("edgegw_devices_offline", "Devices an adapter reports offline", labels=["adapter"])
        for a in doc.get("adapters", ()):
            emitted.add_metric([a["name"]], a.get("emitted", 0))
            invalid.add_metric([a["name"]], a.get("invalid", 0))
            restarts.add_metric([a["name"]], a.get("restarts", 0))
            up.add_metric([a["name"]], 1 if a.get("state") == "running" else 0)
            devices = (a.get("diagnostics") or {}).get("offline")
            offline.add_metric([a["name"]], len(devices) if isinstance(devices, list) else 0)
        yield from (emitted, invalid, restarts, up, offline)

        yield CounterMetricFamily(
            "edgegw_readings_stored", "Readings committed to the buffer", buffer.get("appended_total", 0)
        )
        yield CounterMetricFamily(
            "edgegw_readings_refused", "Readings refused by a full buffer or disk", buffer.get("refused_total", 0)
        )
        dropped = CounterMetricFamily(
            "edgegw_readings_dropped", "Rows dropped by the buffer's caps", labels=["lane", "reason"]
        )
        for lane, reasons in sorted((buffer.get("dropped") or {}).items()):
            for reason, n in sorted(reasons.items()):
                dropped.add_metric([lane, reason], n)
        yield dropped
        rows = GaugeMetricFamily("edgegw_buffer_rows", "Rows in the buffer", labels=["lane"])
        for lane, n in sorted((buffer.get("rows_per_lane") or {}).items()):
            rows.add_metric([lane], n)
        yield rows
        yield GaugeMetricFamily("edgegw_buffer_bytes", "Bytes of rows in the buffer", buffer.get("bytes", 0))
        if buffer.get("last_commit_ms") is not None:
            yield GaugeMetricFamily(
                "edgegw_buffer_last_commit_seconds",
                "Duration of the last group commit",
                buffer["last_commit_ms"] / 1000,
            )
        yield CounterMetricFamily("edgegw_buffer_commits", "Group commits", buffer.get("commits_total", 0))
        if buffer.get("disk_free_bytes") is not None:
            yield GaugeMetricFamily(
                "edgegw_disk_free_bytes", "Free bytes in the data directory", buffer["disk_free_bytes"]
            )

        delivered = CounterMetricFamily("edgegw_readings_delivered", "Readings delivered", labels=["uplink"])
        rejected = CounterMetricFamily("edgegw_readings_rejected", "Readings dead-lettered", labels=["uplink"])
        retries = CounterMetricFamily("edgegw_uplink_retries", "Batches retried", labels=["uplink"])
        uplink_up = GaugeMetricFamily("edgegw_uplink_delivering", "1 unless backing off or refused", labels=["uplink"])
        last = GaugeMetricFamily("edgegw_uplink_last_delivery_timestamp_seconds", "Last delivery", labels=["uplink"])
        backlog = GaugeMetricFamily(
            "edgegw_uplink_backlog_rows", "Rows waiting for the uplink", labels=["uplink", "lane"]
        )
        cursors = buffer.get("uplinks") or {}
        for u in doc.get("uplinks", ()):
            name = u["name"]
            delivered.add_metric([name], u.get("delivered", 0))
            rejected.add_metric([name], u.get("rejected", 0))
            retries.add_metric([name], u.get("retries", 0))
            uplink_up.add_metric([name], 0 if u.get("state") in ("backing-off", "refused") else 1)
            last.add_metric([name], u.get("last_delivery", 0))
            for lane, n in sorted(((cursors.get(name) or {}).get("pending") or {}).items()):
                backlog.add_metric([name, lane], n)
        yield from (delivered, rejected, retries, uplink_up, last, backlog)

        latency = HistogramMetricFamily(
            "edgegw_delivery_latency_seconds",
            "Observed on the device to acknowledged by the far side",
            labels=["uplink"],
        )
        for name, h in sorted((fleet.get("latency") or {}).items()):
            cumulative, buckets = 0, []
            for bound, n in zip([*h["buckets"], float("inf")], h["counts"], strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
            latency.add_metric([name], buckets, h["sum"])
        yield latency

        alarms = GaugeMetricFamily("edgegw_alarms_active", "Active alarms", labels=["kind", "severity"])
        counts: dict[tuple[str, str], int] = {}
        for alarm in fleet.get("alarms") or []:
            key = (alarm["kind"], alarm["severity"])
            counts[key] = counts.get(key, 0) + 1
        for (kind, severity), n in sorted(counts.items()):
            alarms.add_metric([kind, severity], n)
        yield alarms
        yield GaugeMetricFamily(
            "edgegw_safe_mode", "1 while in safe mode", 1 if (fleet.get("safe_mode") or {}).get("active") else 0
        )
        yield GaugeMetricFamily("edgegw_start_time_seconds", "When this generation started", doc.get("started_at", 0))


def render(doc: Mapping[str, Any]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(doc))
    return generate_latest(registry)


class MetricsServer:
    """`GET /metrics` on `[fleet.metrics]` host:port (loopback by default); each scrape reads a fresh status."""

    def __init__(self, config: MetricsConfig, status: Callable[[], Awaitable[Mapping[str, Any]]]) -> None:
        self.config = config
        self._status = status
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def _metrics(self, request: web.Request) -> web.Response:
        body = render(await self._status())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        addresses = self._runner.addresses  # port 0 in tests: the one the kernel chose
        self.port = int(addresses[0][1]) if addresses else self.config.port
        log.info("metrics served on http://%s:%s/metrics", self.config.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
