"""PLACEHOLDER — replaced at merge by the pseudonymize helper's module of the same name (issue 10).

It exists only so `gateway.processing.registry` can import `PseudonymizeConfig` on this branch;
the real module (keyed HMAC-SHA-256 tokens, key rotation) lands from branch i10-pseudo.
"""

from __future__ import annotations

from typing import Literal

from gateway.processing.api import Processor, ProcessorConfig, ProcessorContext

__all__ = ["PseudonymizeConfig"]


class PseudonymizeConfig(ProcessorConfig):
    """PLACEHOLDER: accepts only `type` and `match`; building it fails until the real module is merged."""

    type: Literal["pseudonymize"]

    def build(self, context: ProcessorContext) -> Processor:
        raise NotImplementedError("pseudonymize: placeholder module, replaced by the pseudonymize helper's at merge")
