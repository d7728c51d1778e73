"""The scanner error tree: typed, catchable as the gateway's device-protocol errors."""

from __future__ import annotations

import pytest

from adapters.scanner.codec import (
    BarcodeError,
    CodabarError,
    EanError,
    FramingError,
    KeymapError,
    VisitQrError,
)
from gateway.errors import AdapterError, DeviceProtocolError


@pytest.mark.parametrize("cls", [CodabarError, EanError, FramingError, KeymapError, VisitQrError])
def test_every_codec_error_is_a_device_protocol_error(cls: type[BarcodeError]) -> None:
    error = cls("some_rule", "where: what, got x", position=3)
    assert isinstance(error, BarcodeError)
    assert isinstance(error, DeviceProtocolError)
    assert isinstance(error, AdapterError)
    assert isinstance(error, ValueError)
    assert (error.code, str(error), error.params) == ("some_rule", "where: what, got x", {"position": 3})


def test_class_codes_stay_distinct_for_counters() -> None:
    codes = {cls.code for cls in (BarcodeError, CodabarError, EanError, FramingError, KeymapError, VisitQrError)}
    assert len(codes) == 6


def test_params_may_be_named_code_or_value() -> None:
    error = KeymapError("keymap_x", "m", code=5, value=2)
    assert (error.code, error.params) == ("keymap_x", {"code": 5, "value": 2})
