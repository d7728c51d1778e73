"""The processor kinds by their `type`, the `[[processing]]` parser, and the builder of the stage.

A new kind is a config class (a `ProcessorConfig` with `type: Literal["<kind>"]` and `build()`)
added to `KINDS`; nothing else names it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.configbase import format_validation_error
from gateway.processing.api import (
    Processor,
    ProcessorConfig,
    ProcessorContext,
    ProcessorSource,
)
from gateway.processing.attributes import DropConfig, RenameConfig, UnitConfig
from gateway.processing.pseudonymize import PseudonymizeConfig
from gateway.processing.quality import QualityProcessorConfig
from gateway.processing.river import RiverProcessor, RiverProcessorConfig, RiverStateStore
from gateway.processing.stage import Entry, Stage

__all__ = ["KINDS", "build_stage", "parse_processing"]


KINDS: dict[str, type[ProcessorConfig]] = {
    "quality": QualityProcessorConfig,
    "river": RiverProcessorConfig,
    "rename": RenameConfig,
    "unit": UnitConfig,
    "drop": DropConfig,
    "pseudonymize": PseudonymizeConfig,
}


def parse_processing(raw: Any, errors: list[str]) -> list[ProcessorConfig]:
    """The `[[processing]]` entries validated in file order; problems appended to `errors` with key paths."""
    if not isinstance(raw, list):
        return []  # not an array of tables: reported by the top-level validation
    out: list[ProcessorConfig] = []
    valid = ", ".join(f'"{k}"' for k in KINDS)
    for i, item in enumerate(raw):
        where = f"processing[{i}]"
        if not isinstance(item, dict):
            continue  # reported by the top-level validation
        kind = item.get("type")
        if kind is None:
            errors.append(f"{where}.type: required key is missing; valid: {valid}")
            continue
        model = KINDS.get(kind) if isinstance(kind, str) else None
        if model is None:
            errors.append(
                f"{where}.type: unknown processor type, got {json.dumps(kind, ensure_ascii=False)}; valid: {valid}"
            )
            continue
        try:
            config = model.model_validate(item)
        except ValidationError as exc:
            errors.extend(format_validation_error(exc, model, where))
            continue
        out.append(config)
    return out


def build_stage(
    configs: Sequence[ProcessorConfig], context: ProcessorContext, sources: Iterable[tuple[str, object]] = ()
) -> Stage | None:
    """The stage of every adapter that is a `ProcessorSource` (adapter order), then of the configured entries
    (file order).

    An adapter's processors come first: they are matched on its own attribute names and work in its
    units (a Modbus river point is in MTR, CMT or MMT, its thresholds in metres), which a configured
    rename or conversion would change under them. None when there is nothing to run: the emit path
    then skips the stage altogether.
    """
    entries: list[Entry] = []
    for adapter_name, adapter in sources:
        if isinstance(adapter, ProcessorSource):
            entries.extend(
                Entry(name=f"{adapter_name}: {_label(p)}", match=m, processor=p) for m, p in adapter.processors()
            )
    entries.extend(
        Entry(name=f"processing[{i}] ({c.type})", match=c.match, processor=c.build(context))
        for i, c in enumerate(configs)
    )
    _keep_river_states(entries, context)
    return Stage(entries) if entries else None


def _keep_river_states(entries: Sequence[Entry], context: ProcessorContext) -> None:
    """Every river, configured or an adapter's, keeps its gauges' states in the data directory's store.

    On the event loop (the gateway's start and reload) the store opens in its own thread and this returns at
    once: adapters and uplinks go on meanwhile, and only a gauge's first sample waits for its kept state.
    Elsewhere (a tool, a worker thread) the store is open when this returns, or None if it cannot be.
    """
    rivers = [e.processor for e in entries if isinstance(e.processor, RiverProcessor)]
    if rivers and context.data_dir:  # no data directory (a test, a tool): the states live in memory only
        store = RiverStateStore.shared(Path(context.data_dir), wait=not _on_event_loop())
        for river in rivers:
            river.keep_state(store)


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _label(processor: Processor) -> str:
    """`gauge1 level (river)`: the processor's own name and kind, as far as it has them."""
    name = getattr(processor, "name", "") or type(processor).__name__
    kind = getattr(processor, "kind", "")
    return f"{name} ({kind})" if kind else name
