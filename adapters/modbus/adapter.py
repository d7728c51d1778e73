"""The Modbus adapter: polls the devices of each bus by their profiles, emits their readings, writes their commands."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from adapters.modbus import rtu
from adapters.modbus.bus import Bus, BusDevice, DeviceState, PollResult
from adapters.modbus.codec import CommandRejected, PointValue, QualityCode, encode_command
from adapters.modbus.config import BusConfig, DeviceConfig, ModbusConfig
from adapters.modbus.transport import LinkError, ModbusTimeout, open_link
from gateway.adapter_api import AdapterConfig, AdapterContext
from gateway.date_observed import DATE_OBSERVED, date_observed, has_date_observed
from gateway.errors import AdapterError, ConfigError
from gateway.location import LOCATION
from gateway.logs import component_logger
from gateway.ngsi.identifiers import check_entity_id
from gateway.processing.api import Processor, ProcessorMatch
from gateway.processing.quality import RAW_METADATA, VALUE_METADATA, QualityConfig, QualityProcessor
from gateway.processing.river import RiverProcessor
from gateway.profiles.schema import DataType, Point, Profile, Transport
from gateway.records import Attribute, Command, CommandResult, Emit, Lane, Reading, Source, TimeSource, utc_now

DEVICE_TYPE = "Device"  # the Smart Data Model every device's own entity follows (dataModel.Device)
CONTROLLED_PROPERTY = "controlledProperty"
REASON = "reason"  # deviceState's metadata: why the device is offline, "" while it is online
# A river distance point the profile does not publish reaches the river processor under this name;
# the processor removes it after computing the level, so it never reaches the buffer.
RIVER_INPUT = "edgegwRiverInput"

__all__ = ["QUEUE_SIZE", "ModbusAdapter", "quality_config_of"]

QUEUE_SIZE = 10_000  # readings waiting for the buffer; beyond it the oldest are dropped (and counted)
_NUMERIC = (DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32, DataType.FLOAT32, DataType.FLOAT64)
_BOOL_WORDS = {"true": True, "on": True, "1": True, "false": False, "off": False, "0": False}


def quality_config_of(point: Point) -> QualityConfig:
    """The checks a profile's point asks for: its valid range, no-data sentinels, spike and stuck limits."""
    lo, hi = point.valid_range if point.valid_range is not None else (None, None)
    q = point.quality
    return QualityConfig(
        valid_min=lo,
        valid_max=hi,
        sentinels=point.no_data,
        spike_max_delta=q.spike_threshold if q else None,
        stuck_window_s=q.stuck_window if q else None,
    )


@dataclass(slots=True, kw_only=True)
class _Device:
    config: DeviceConfig
    profile: Profile
    bus: Bus
    unit: BusDevice
    entity_id: str
    device_entity_id: str
    source: Source
    checked: frozenset[str]  # the points a quality processor checks (the numeric ones)
    dated: bool  # its entity type carries dateObserved


class ModbusAdapter:
    """Modbus RTU/TCP devices described by firmware profiles; see README.md."""

    config_model: ClassVar[type[AdapterConfig]] = ModbusConfig

    def __init__(
        self, config: AdapterConfig, context: AdapterContext, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        if not isinstance(config, ModbusConfig):
            raise TypeError(f"ModbusAdapter needs a ModbusConfig, got {type(config).__name__}")
        self.config = config
        self.context = context
        self._clock = clock
        self._log = component_logger(__name__, config.name)
        self._queue: asyncio.Queue[Reading] | None = None
        self.dropped = 0  # readings dropped because the buffer did not keep up
        self.emitted = 0
        self.buses: dict[str, Bus] = {}
        self.devices: dict[str, _Device] = {}
        self._by_entity: dict[str, _Device] = {}
        self._processors: list[tuple[ProcessorMatch, Processor]] = []
        self._build()

    # --- construction --------------------------------------------------------------------------------------

    def _build(self) -> None:
        cfg = self.config
        errors: list[str] = []
        for bus_cfg in cfg.buses:
            self.buses[bus_cfg.name] = self._bus(bus_cfg)
        for i, dc in enumerate(cfg.devices):
            profile = cfg.profile_of(dc)
            fields = {
                "gateway": self.context.gateway_id,
                "adapter": cfg.name,
                "bus": dc.bus,
                "device": dc.name,
                "unit_id": str(dc.unit_id),
                "entity_type": profile.entity_type,
            }
            ids = []
            for key, template in (("entity_id", dc.entity_id), ("device_entity_id", dc.device_entity_id)):
                value = template.format_map(fields)
                try:
                    check_entity_id(value)
                except ValueError as exc:
                    errors.append(f'devices[{i}].{key}: {exc}, got "{value}"')
                ids.append(value)
            iface = profile.interface
            unit = BusDevice(
                name=dc.name,
                unit_id=dc.unit_id,
                points=profile.points,
                intervals=[p.poll_interval or dc.poll_interval or profile.poll_interval for p in profile.points],
                timeout=dc.timeout or iface.timeout,
                retries=dc.retries,
                inter_request_delay=dc.inter_request_delay
                if dc.inter_request_delay is not None
                else iface.inter_request_delay,
                max_registers=iface.max_registers_per_read,
                max_bits=iface.max_bits_per_read,
                max_gap=iface.max_gap,
            )
            bus = self.buses[dc.bus]
            bus.devices.append(unit)
            checked = frozenset(p.name for p in profile.points if p.data_type in _NUMERIC)
            device = _Device(
                config=dc,
                profile=profile,
                bus=bus,
                unit=unit,
                entity_id=ids[0],
                device_entity_id=ids[1],
                source=Source(adapter=cfg.name, device=dc.name),
                checked=checked,
                dated=has_date_observed(profile.entity_type),
            )
            self._processors.extend(self._device_processors(device))
            self.devices[dc.name] = device
            self._by_entity.setdefault(ids[0], device)
            self._by_entity.setdefault(ids[1], device)
        if errors:
            raise ConfigError(errors, cfg.name)

    def _device_processors(self, device: _Device) -> list[tuple[ProcessorMatch, Processor]]:
        """The device's per-point `[quality]` and `[river]` as processors of the gateway's processing stage.

        Quality first, then the river: the river ignores a level its quality check flagged.
        """
        dc, profile = device.config, device.profile
        entity = re.escape(device.entity_id)
        out: list[tuple[ProcessorMatch, Processor]] = []
        for p in profile.points:
            attribute = self._attribute_of(dc, p)
            if p.name not in device.checked or attribute is None:
                continue
            checks = QualityProcessor(
                dc.quality.get(p.name) or quality_config_of(p), attribute=attribute, name=f"{dc.name} {p.name}"
            )
            out.append((ProcessorMatch(adapter=self.config.name, entity_id=entity, attribute=attribute), checks))
        river = dc.river
        if river is not None:
            point = profile.point(river.point)
            attribute = self._attribute_of(dc, point)
            assert attribute is not None  # the river point is published or travels as RIVER_INPUT
            gauge = RiverProcessor(
                river,
                attribute=attribute,
                level_attribute=river.level_attribute,
                name=f"{dc.name} {point.name}",
                remove_source=point.attribute is None,
            )
            out.append((ProcessorMatch(adapter=self.config.name, entity_id=entity, attribute=attribute), gauge))
        return out

    @staticmethod
    def _attribute_of(dc: DeviceConfig, point: Point) -> str | None:
        """The attribute a point's value travels under to the stage, None when it is not emitted."""
        if point.attribute is not None:
            return point.attribute
        return RIVER_INPUT if dc.river is not None and dc.river.point == point.name else None

    def processors(self) -> Sequence[tuple[ProcessorMatch, Processor]]:
        """`ProcessorSource`: the quality checks and river gauges of every device, for the processing stage."""
        return self._processors

    def _bus(self, bus_cfg: BusConfig) -> Bus:
        settings = self.config.serial_settings(bus_cfg)
        address = bus_cfg.address
        link = open_link(address, settings, connect_timeout=bus_cfg.connect_timeout)
        gap = rtu.silent_interval(settings.baud) if address.transport is Transport.RTU else 0.0
        return Bus(
            name=bus_cfg.name,
            link=link,
            devices=[],
            on_poll=self._polled,
            on_state=self._state_changed,
            silent_interval=gap,
            offline_after=self.config.offline_after,
            probe_initial=self.config.probe_initial,
            probe_max=self.config.probe_max,
            reopen_max=bus_cfg.reopen_max,
            component=self.config.name,
        )

    # --- running -------------------------------------------------------------------------------------------

    async def run(self, emit: Emit) -> None:
        self._queue = asyncio.Queue(QUEUE_SIZE)
        for reading in self.descriptions():
            self._put(reading)
        async with asyncio.TaskGroup() as tasks:
            for bus in self.buses.values():
                if bus.devices:
                    tasks.create_task(bus.run(), name=f"modbus bus {bus.name}")
            tasks.create_task(self._deliver(emit), name="modbus emit")

    async def _deliver(self, emit: Emit) -> None:
        assert self._queue is not None
        while True:
            reading = await self._queue.get()
            await emit(reading)
            self.emitted += 1

    def _put(self, reading: Reading) -> None:
        # the bus must never wait for the buffer: a full queue loses its oldest reading, counted
        queue = self._queue
        if queue is None:
            return
        if queue.full():
            queue.get_nowait()
            if self.dropped == 0:
                self._log.warning("readings arrive faster than the buffer takes them; dropping the oldest")
            self.dropped += 1
        queue.put_nowait(reading)

    # --- readings ------------------------------------------------------------------------------------------

    def descriptions(self) -> list[Reading]:
        """What describes each device rather than measures it, sent once when the adapter starts.

        The Device entity's `controlledProperty` (the model requires it) and, when configured, the
        `location` of the device's entities. Orion keeps them between updates, so the readings of
        every poll stay small, and a platform behind an UltraLight agent (which carries no lists or
        objects, and takes such attributes as static attributes of its own) loses only these.
        """
        now = self._clock()
        out: list[Reading] = []
        for device in self.devices.values():
            dc, profile = device.config, device.profile
            controlled = dc.controlled_property if dc.controlled_property is not None else profile.controlled_property
            described: dict[tuple[str, str], dict[str, Attribute]] = {}
            for entity_id, entity_type in (
                (device.device_entity_id, DEVICE_TYPE),
                (device.entity_id, profile.entity_type),
            ):
                attrs = described.setdefault((entity_id, entity_type), {})
                if entity_type == DEVICE_TYPE:
                    attrs[CONTROLLED_PROPERTY] = Attribute(value=list(controlled), type="StructuredValue")
                if dc.location is not None:
                    attrs[LOCATION] = dc.location.attribute()
            out.extend(
                Reading(
                    entity_id=entity_id,
                    entity_type=entity_type,
                    attributes=attrs,
                    observed_at=now,
                    time_source=TimeSource.GATEWAY,
                    source=device.source,
                )
                for (entity_id, entity_type), attrs in described.items()
                if attrs
            )
        return out

    def _state_changed(self, unit: BusDevice, state: DeviceState, reason: str) -> None:
        device = self.devices[unit.name]
        # `reason` goes with every state, "" when online: Orion keeps metadata an update leaves out,
        # so an online state sent without it would still carry the last offline reason
        attrs = {
            "deviceState": Attribute(
                value=state.value, type="Text", metadata={REASON: {"type": "Text", "value": _safe_text(reason)}}
            )
        }
        self._put(
            Reading(
                entity_id=device.device_entity_id,
                entity_type=DEVICE_TYPE,
                attributes=attrs,
                observed_at=self._clock(),
                time_source=TimeSource.GATEWAY,
                source=device.source,
            )
        )

    def _polled(self, result: PollResult) -> None:
        # quality and river run in the gateway's processing stage (see `processors()`): the register
        # value before scale and offset goes along as metadata for the sentinel check, which removes it
        device = self.devices[result.device.name]
        now = self._clock()
        attrs: dict[str, Attribute] = {}
        for name, pv in result.values.items():
            point = device.profile.point(name)
            attribute = self._attribute_of(device.config, point)
            if attribute is None or (pv.value is None and name not in device.checked):
                continue  # a refused read of a point without quality checks: a bare null would carry no flag
            value = _ngsi_value(pv, point.ngsi_type)
            metadata: dict[str, Any] = {}
            if name in device.checked:
                checked = pv.value
                if checked is None and pv.quality is QualityCode.NO_DATA and pv.raw in point.no_data:
                    checked = pv.raw  # the sentinel itself, so the flag says `sentinel`, not just `no_data`
                if isinstance(pv.raw, (int, float)):
                    metadata[RAW_METADATA] = {"type": "Number", "value": pv.raw}
                if checked is not value:
                    metadata[VALUE_METADATA] = {"type": "Number", "value": checked}
            attrs[attribute] = Attribute(value=value, type=point.ngsi_type, unit=point.unit, metadata=metadata)
        if attrs:
            if device.dated:
                attrs[DATE_OBSERVED] = date_observed(now)
            self._put(
                Reading(
                    entity_id=device.entity_id,
                    entity_type=device.profile.entity_type,
                    attributes=attrs,
                    observed_at=now,
                    time_source=TimeSource.GATEWAY,
                    source=device.source,
                    lane=Lane.NORMAL,
                )
            )

    # --- commands ------------------------------------------------------------------------------------------

    async def handle(self, command: Command) -> CommandResult:
        """Write a profile command to its device; the result says what was written or why not."""

        def fail(info: str) -> CommandResult:
            self._log.warning("command %s: %s", command.command_id, info)
            return CommandResult(command_id=command.command_id, ok=False, info=info)

        device = self._by_entity.get(command.entity_id)
        if device is None:
            return fail(f'command {command.name}: no Modbus device has entity id "{command.entity_id}"')
        try:
            spec = device.profile.command(command.name)
        except KeyError:
            known = ", ".join(c.name for c in device.profile.commands) or "none"
            return fail(
                f"command {command.name}: {device.config.profile} has no such command, "
                f'got "{command.name}"; commands: {known}'
            )
        value = command.value
        if spec.data_type is DataType.BOOL and isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            value = _BOOL_WORDS[value.strip().lower()]
        # a number as text ("150", as UltraLight carries every value) is checked by encode_command as the
        # number it spells, against the range before any conversion
        try:
            write = encode_command(spec, value)
        except CommandRejected as exc:
            return fail(f"{device.config.name}: {exc}")
        request = rtu.Request(
            unit_id=device.unit.unit_id,
            function_code=write.function_code,
            address=write.address,
            value=(1 if write.bits[0] else 0)
            if write.function_code == 5
            else (write.registers[0] if write.function_code == 6 else 0),
            bits=write.bits if write.function_code == 15 else (),
            registers=write.registers if write.function_code == 16 else (),
        )
        try:
            await device.bus.write(device.unit, request)
        except (ModbusTimeout, rtu.ModbusError, LinkError) as exc:
            return fail(f"{device.config.name}: command {command.name}: {exc}")
        except AdapterError as exc:  # anything else the line reported, still worded for a technician
            return fail(f"{device.config.name}: command {command.name}: {exc}")
        info = f"{device.config.name}: command {command.name} written ({request.describe()})"
        self._log.info("command %s: %s", command.command_id, info)
        return CommandResult(command_id=command.command_id, ok=True, info=info)

    # --- diagnostics ---------------------------------------------------------------------------------------

    def diagnostics(self) -> dict[str, Any]:
        """Per-bus and per-device state and counters, for status.json, `edgegw status` and the admin UI;
        `malformed` (by kind) counts the frames that arrived broken, over every device."""
        counters = [bus_device.counters for bus in self.buses.values() for bus_device in bus.devices]
        out: dict[str, Any] = {
            "emitted": self.emitted,
            "dropped": self.dropped,
            "buses": {},
            "malformed": {
                "crc_errors": sum(c.crc_errors for c in counters),
                "frame_errors": sum(c.frame_errors for c in counters),
            },
        }
        devices = [d for bus in self.buses.values() for d in bus.devices]
        offline = [d.name for d in devices if d.state is not DeviceState.ONLINE]
        # the devices not delivering data (offline, refusing every read, not answered yet): gateway/fleet's
        # alarms and metrics read this list
        out["offline"] = offline
        out["summary"] = f"devices online {len(devices) - len(offline)}/{len(devices)}" + (
            f" (not online: {', '.join(offline)})" if offline else ""
        )
        for bus in self.buses.values():
            out["buses"][bus.name] = {
                "port": bus.link.description,
                "open": bus.link.is_open,
                "error": bus.link_error,
                # a line that streams: the times it was found never quiet, and the bytes no request could take
                "never_quiet": bus.never_quiet,
                "dropped_bytes": bus.link.dropped_bytes,
                "devices": {
                    d.name: {
                        "state": d.state.value,
                        "unit_id": d.unit_id,
                        "last_error": d.last_error,
                        **{k: (dict(v) if isinstance(v, Mapping) else v) for k, v in _counters(d.counters).items()},
                    }
                    for d in bus.devices
                },
            }
        return out


def _counters(counters: object) -> dict[str, Any]:
    return {name: getattr(counters, name) for name in counters.__slots__}  # type: ignore[attr-defined]


def _ngsi_value(pv: PointValue, ngsi_type: str) -> Any:
    value = pv.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if ngsi_type == "Text" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # an id held in registers (a serial number) declared Text: Orion wants a string
    return value


def _safe_text(text: str) -> str:
    # Orion refuses < > " ' = ; ( ) in values; the reason is for people, so soften them
    table = str.maketrans({"<": "‹", ">": "›", '"': "”", "'": "’", "=": "＝", ";": ",", "(": "（", ")": "）"})
    return text.translate(table)[:500]
