"""Loads the regression cases under cases/<name>/ and renders Readings as comparable JSON."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from adapters.mqtt.config import MqttAdapterConfig
from gateway.records import Reading

CASES_DIR = Path(__file__).parent / "cases"


@dataclass(frozen=True, kw_only=True)
class Message:
    topic: str
    payload: bytes
    now: datetime


@dataclass(frozen=True, kw_only=True)
class Case:
    name: str
    config: MqttAdapterConfig
    messages: list[Message]
    expected: list[dict[str, Any]]


def case_names() -> list[str]:
    return sorted(p.name for p in CASES_DIR.iterdir() if p.is_dir())


def load_case(name: str, **overrides: Any) -> Case:
    folder = CASES_DIR / name
    section = tomllib.loads((folder / "config.toml").read_text(encoding="utf-8"))["adapters"][0]
    config = MqttAdapterConfig.model_validate({**section, **overrides})
    messages = []
    for line in (folder / "messages.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        payload = item["payload_text"].encode() if "payload_text" in item else json.dumps(item["payload"]).encode()
        messages.append(Message(topic=item["topic"], payload=payload, now=datetime.fromisoformat(item["now"])))
    expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    assert len(expected) == len(messages), f"{name}: expected.json must have one entry per message"
    return Case(name=name, config=config, messages=messages, expected=expected)


def reading_json(r: Reading) -> dict[str, Any]:
    return {
        "entity_id": r.entity_id,
        "entity_type": r.entity_type,
        "attributes": {n: {"value": a.value, "type": a.type, "unit": a.unit} for n, a in r.attributes.items()},
        "observed_at": r.observed_at.isoformat(timespec="microseconds"),
        "time_source": r.time_source.value,
        "lane": r.lane.name,
        "source": {"adapter": r.source.adapter, "device": r.source.device},
    }
