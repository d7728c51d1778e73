"""Scanner framing: prefix/suffix stripping and AIM symbology identifiers (ISO/IEC 15424)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.scanner.aim import (
    AimId,
    AimPolicy,
    Framed,
    FramingConfig,
    Suffix,
    Symbology,
    frame,
    unframe,
)
from adapters.scanner.codec import FramingError
from gateway.errors import ConfigError


@pytest.mark.parametrize(
    ("raw", "config", "data", "aim"),
    [
        # ]F0 Codabar (DEVICES.md; ISO/IEC 15424 Table 1 as listed in jodal/biip symbology.py)
        (b"]F0A37859+B\r", FramingConfig(), "A37859+B", AimId(symbology=Symbology.CODABAR, modifier="0")),
        # ]E0 EAN-13 (bwipp wiki: "UPC-A and EAN-13 ... transmitted as ]E0 and thirteen digits")
        ("]E09784344405042\r\n", FramingConfig(suffix=Suffix.CRLF), "9784344405042",
         AimId(symbology=Symbology.EAN_UPC, modifier="0")),
        # ]C1 GS1-128 with AI (01) GTIN
        ("]C10104912345678904\n", FramingConfig(suffix=Suffix.LF), "0104912345678904",
         AimId(symbology=Symbology.CODE_128, modifier="1")),
        ("]Q1VQ1.K1.P-1.X\t", FramingConfig(suffix=Suffix.TAB, aim=AimPolicy.REQUIRED), "VQ1.K1.P-1.X",
         AimId(symbology=Symbology.QR_CODE, modifier="1")),
        ("]A0CODE39", FramingConfig(suffix=Suffix.NONE), "CODE39", AimId(symbology=Symbology.CODE_39, modifier="0")),
        ("]d2010491234567890417\r", FramingConfig(), "010491234567890417",
         AimId(symbology=Symbology.DATA_MATRIX, modifier="2")),
        ("LIBA1234B\x03", FramingConfig(prefix="LIB", suffix=Suffix.CUSTOM, custom_suffix="\x03"), "A1234B", None),
        ("A1234B\r\n", FramingConfig(suffix=Suffix.ANY_EOL), "A1234B", None),
        ("A1234B\n", FramingConfig(suffix=Suffix.ANY_EOL), "A1234B", None),
        ("A1234B\r", FramingConfig(suffix=Suffix.ANY_EOL), "A1234B", None),
        # optional AIM: "]" followed by an unknown code character, or too short, is data
        ("]Y12\r", FramingConfig(), "]Y12", None),
        ("]F\r", FramingConfig(), "]F", None),
        ("]Fx1\r", FramingConfig(), "]Fx1", None),
        ("]F0123\r", FramingConfig(aim=AimPolicy.ABSENT), "]F0123", None),
    ],
)  # fmt: skip
def test_golden_frames(raw: str | bytes, config: FramingConfig, data: str, aim: AimId | None) -> None:
    assert unframe(raw, config) == Framed(data=data, aim=aim)


def test_aim_id_text() -> None:
    assert AimId(symbology=Symbology.CODABAR, modifier="0").text == "]F0"


@pytest.mark.parametrize(
    ("raw", "config", "code", "message"),
    [
        (b"A12\xff34B\r", FramingConfig(), "framing_encoding",
         "scanner framing: scan is not UTF-8, got byte 0xff at 3; check the scanner's character set / baud rate"),
        ("A1234B", FramingConfig(), "framing_suffix",
         "scanner framing: suffix cr missing (partial read?), got '4B'; check the scanner's suffix setting"),
        ("A1234B\n", FramingConfig(suffix=Suffix.CRLF), "framing_suffix",
         "scanner framing: suffix crlf missing (partial read?), got 'B\\n'; check the scanner's suffix setting"),
        ("A1234B", FramingConfig(suffix=Suffix.ANY_EOL), "framing_suffix",
         "scanner framing: suffix any_eol missing (partial read?), got '4B'; check the scanner's suffix setting"),
        ("A1234B\r", FramingConfig(prefix="LIB"), "framing_prefix",
         "scanner framing: prefix 'LIB' missing, got 'A12'; check the scanner's prefix setting"),
        ("A1234B\r", FramingConfig(aim=AimPolicy.REQUIRED), "framing_aim_missing",
         "scanner framing: AIM symbology identifier expected, got 'A12'; "
         "enable AIM ids on the scanner or set aim = 'optional'"),
        ("]Q1http://x\r", FramingConfig(symbologies=frozenset({Symbology.CODABAR})), "framing_symbology",
         "scanner framing: symbology not accepted here, got ]Q1; "
         "scan the item's library label, not another code on it"),
        ("A1234B\r", FramingConfig(symbologies=frozenset({Symbology.CODABAR})), "framing_symbology",
         "scanner framing: symbology not accepted here, got none; "
         "scan the item's library label, not another code on it"),
        ("\r", FramingConfig(), "framing_empty", "scanner framing: no data between prefix and suffix, got ''"),
        ("]F0\r", FramingConfig(), "framing_empty", "scanner framing: no data between prefix and suffix, got ''"),
    ],
)  # fmt: skip
def test_errors(raw: str | bytes, config: FramingConfig, code: str, message: str) -> None:
    with pytest.raises(FramingError) as err:
        unframe(raw, config)
    assert (err.value.code, str(err.value)) == (code, message)


def test_error_params() -> None:
    with pytest.raises(FramingError) as err:
        unframe("]E01\r", FramingConfig(symbologies=frozenset({Symbology.CODABAR})))
    assert err.value.params == {"symbology": "EAN_UPC"}


@pytest.mark.parametrize(
    ("kwargs", "messages"),
    [
        ({"suffix": Suffix.CUSTOM}, ["scanner.framing.custom_suffix: set it exactly when suffix = 'custom', "
                                     "got '' with suffix 'custom'"]),
        ({"custom_suffix": "#"}, ["scanner.framing.custom_suffix: set it exactly when suffix = 'custom', "
                                  "got '#' with suffix 'cr'"]),
        ({"aim": AimPolicy.ABSENT, "symbologies": frozenset({Symbology.CODABAR})},
         ["scanner.framing.symbologies: needs AIM ids to check, got aim = 'absent'; "
          "enable AIM ids on the scanner and set aim = 'required'"]),
    ],
)  # fmt: skip
def test_bad_config(kwargs: dict[str, object], messages: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        FramingConfig(**kwargs)  # type: ignore[arg-type]
    assert err.value.errors == messages


@st.composite
def framings(draw: st.DrawFn) -> FramingConfig:
    suffix = draw(st.sampled_from(Suffix))
    aim = draw(st.sampled_from(AimPolicy))
    return FramingConfig(
        prefix=draw(st.sampled_from(["", "LIB", "#"])),
        suffix=suffix,
        custom_suffix="<END>" if suffix is Suffix.CUSTOM else "",
        aim=aim,
        symbologies=frozenset() if aim is AimPolicy.ABSENT else draw(st.frozensets(st.sampled_from(Symbology))),
    )


@settings(max_examples=400)
@given(config=framings(), data=st.data())
def test_frame_then_unframe_round_trips(config: FramingConfig, data: st.DataObject) -> None:
    allowed = sorted(config.symbologies or Symbology, key=lambda s: s.value)
    modifiers = st.sampled_from("0123456789AZ")
    with_aim = st.builds(AimId, symbology=st.sampled_from(allowed), modifier=modifiers)
    if config.aim is AimPolicy.ABSENT:
        aim = None
    elif config.aim is AimPolicy.REQUIRED or config.symbologies:
        aim = data.draw(with_aim)
    else:
        aim = data.draw(st.none() | with_aim)
    text = st.text(min_size=1, max_size=30)
    if aim is None and config.aim is AimPolicy.OPTIONAL:
        text = text.filter(lambda t: not t.startswith("]"))  # would be read as an AIM id
    payload = data.draw(text)
    assert unframe(frame(payload, config, aim), config) == Framed(data=payload, aim=aim)
    assert unframe(frame(payload, config, aim).encode("utf-8"), config) == Framed(data=payload, aim=aim)


@settings(max_examples=400)
@given(config=framings(), raw=st.binary(max_size=40) | st.text(max_size=40))
def test_arbitrary_input_raises_only_framing_errors(config: FramingConfig, raw: str | bytes) -> None:
    try:
        framed = unframe(raw, config)
    except FramingError:
        return
    assert framed.data


def test_frame_writes_what_the_scanner_sends() -> None:
    codabar = AimId(symbology=Symbology.CODABAR, modifier="0")
    assert frame("A1B", FramingConfig(), codabar) == "]F0A1B\r"
    assert frame("A1B", FramingConfig(suffix=Suffix.ANY_EOL)) == "A1B\r\n"
    assert frame("A1B", FramingConfig(prefix="#", suffix=Suffix.CUSTOM, custom_suffix="$$")) == "#A1B$$"
