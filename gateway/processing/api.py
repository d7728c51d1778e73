"""The processing stage's contracts: a processor is a small pure step between adapters and the buffer."""
from __future__ import annotations
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from gateway.records import Reading

@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessorContext:
    gateway_id: str
    data_dir: str

class Processor(Protocol):
    """One small pure step: readings and `now` in, readings out; no I/O, no clock of its own."""
    def process(self, reading: Reading, now: datetime) -> Sequence[Reading]: ...
    def diagnostics(self) -> dict[str, int]: ...
