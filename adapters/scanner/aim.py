"""Scanner output framing: strip the configured prefix/suffix and read the AIM symbology identifier."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from gateway.errors import ConfigError

from .codec import FramingError

__all__ = ["AimId", "AimPolicy", "Framed", "FramingConfig", "Suffix", "Symbology", "frame", "unframe"]


class Symbology(Enum):
    """Code characters of AIM symbology identifiers `]` + code + modifier (ISO/IEC 15424, Table 1)."""

    CODE_39 = "A"
    TELEPEN = "B"
    CODE_128 = "C"  # ]C1 = GS1-128
    CODE_ONE = "D"
    EAN_UPC = "E"  # ]E0 = EAN-13/UPC-A/UPC-E, ]E4 = EAN-8
    CODABAR = "F"  # ]F0 = Codabar/NW-7
    CODE_93 = "G"
    CODE_11 = "H"
    ITF = "I"
    CODE_16K = "K"
    PDF417 = "L"
    MSI = "M"
    ANKER = "N"
    CODABLOCK = "O"
    PLESSEY = "P"
    QR_CODE = "Q"  # ]Q1 = QR model 2, ]Q3 = GS1 QR
    STRAIGHT_2OF5_2BAR = "R"
    STRAIGHT_2OF5_3BAR = "S"
    CODE_49 = "T"
    MAXICODE = "U"
    OTHER = "X"
    NON_BARCODE = "Z"
    CHANNEL_CODE = "c"
    DATA_MATRIX = "d"
    GS1_DATABAR = "e"
    OCR = "o"
    POSICODE = "p"
    SUPERCODE = "s"
    AZTEC = "z"
    # "Y" (system expansion) carries a variable-length modifier and is not accepted.


_BY_CODE = {s.value: s for s in Symbology}
_MODIFIERS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True, kw_only=True, slots=True)
class AimId:
    symbology: Symbology
    modifier: str

    @property
    def text(self) -> str:
        return "]" + self.symbology.value + self.modifier


class AimPolicy(Enum):
    REQUIRED = "required"  # every scan starts with an AIM id (scanner set to send them)
    OPTIONAL = "optional"  # read one when the data starts with `]` and a known code character
    ABSENT = "absent"  # never: the data itself may start with `]`


class Suffix(Enum):
    """The terminator the scanner appends (a serial scanner's 'suffix' setting)."""

    NONE = "none"
    CR = "cr"
    LF = "lf"
    CRLF = "crlf"
    TAB = "tab"
    ANY_EOL = "any_eol"  # one of CRLF, CR or LF
    CUSTOM = "custom"  # FramingConfig.custom_suffix


_SUFFIX_TEXT = {Suffix.NONE: "", Suffix.CR: "\r", Suffix.LF: "\n", Suffix.CRLF: "\r\n", Suffix.TAB: "\t"}


@dataclass(frozen=True, kw_only=True, slots=True)
class FramingConfig:
    """How a scanner frames each scan: `prefix` + [AIM id] + data + suffix."""

    prefix: str = ""
    suffix: Suffix = Suffix.CR
    custom_suffix: str = ""
    aim: AimPolicy = AimPolicy.OPTIONAL
    symbologies: frozenset[Symbology] = frozenset()  # accepted AIM symbologies; empty = any

    def __post_init__(self) -> None:
        where = "scanner.framing"
        errors: list[str] = []
        if (self.suffix is Suffix.CUSTOM) != bool(self.custom_suffix):
            errors.append(
                f"{where}.custom_suffix: set it exactly when suffix = 'custom', "
                f"got {self.custom_suffix!r} with suffix {self.suffix.value!r}"
            )
        if self.symbologies and self.aim is AimPolicy.ABSENT:
            errors.append(
                f"{where}.symbologies: needs AIM ids to check, got aim = 'absent'; "
                "enable AIM ids on the scanner and set aim = 'required'"
            )
        if errors:
            raise ConfigError(errors)


@dataclass(frozen=True, kw_only=True, slots=True)
class Framed:
    data: str
    aim: AimId | None


def _fail(code: str, what: str, value: object, fix: str = "", /, **params: object) -> FramingError:
    tail = f"; {fix}" if fix else ""
    return FramingError(code, f"scanner framing: {what}, got {value}{tail}", **params)


def unframe(raw: str | bytes, config: FramingConfig) -> Framed:
    """Strip `config`'s framing from one scan; bytes must be UTF-8 (ASCII for 1D symbols)."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _fail(
                "framing_encoding",
                "scan is not UTF-8",
                f"byte 0x{raw[exc.start]:02x} at {exc.start}",
                "check the scanner's character set / baud rate",
                offset=exc.start,
            ) from None
    else:
        text = raw
    text = _strip_suffix(text, config)
    prefix = config.prefix
    if prefix:
        if not text.startswith(prefix):
            raise _fail(
                "framing_prefix",
                f"prefix {prefix!r} missing",
                repr(text[: len(prefix)]),
                "check the scanner's prefix setting",
            )
        text = text[len(prefix) :]
    aim: AimId | None = None
    if config.aim is not AimPolicy.ABSENT:
        aim = _read_aim(text, config.aim)
        if aim is not None:
            text = text[3:]
    if config.symbologies and (aim is None or aim.symbology not in config.symbologies):
        raise _fail(
            "framing_symbology",
            "symbology not accepted here",
            aim.text if aim is not None else "none",
            "scan the item's library label, not another code on it",
            symbology=aim.symbology.name if aim is not None else None,
        )
    if not text:
        raise _fail("framing_empty", "no data between prefix and suffix", "''")
    return Framed(data=text, aim=aim)


def _strip_suffix(text: str, config: FramingConfig) -> str:
    suffix = config.suffix
    if suffix is Suffix.ANY_EOL:
        if text.endswith("\r\n"):
            return text[:-2]
        if text.endswith(("\r", "\n")):
            return text[:-1]
        end = ""
    else:
        end = config.custom_suffix if suffix is Suffix.CUSTOM else _SUFFIX_TEXT[suffix]
        if text.endswith(end):
            return text[: len(text) - len(end)]
    raise _fail(
        "framing_suffix",
        f"suffix {suffix.value} missing (partial read?)",
        repr(text[-2:]),
        "check the scanner's suffix setting",
        expected=end or suffix.value,
    )


def _read_aim(text: str, policy: AimPolicy) -> AimId | None:
    symbology = _BY_CODE.get(text[1:2]) if text[:1] == "]" else None
    if symbology is None or len(text) < 3 or text[2] not in _MODIFIERS:
        if policy is AimPolicy.REQUIRED:
            raise _fail(
                "framing_aim_missing",
                "AIM symbology identifier expected",
                repr(text[:3]),
                "enable AIM ids on the scanner or set aim = 'optional'",
            )
        return None
    return AimId(symbology=symbology, modifier=text[2])


def frame(data: str, config: FramingConfig, aim: AimId | None = None) -> str:
    """What a scanner set up per `config` sends for `data` (the inverse of `unframe`)."""
    if config.suffix is Suffix.ANY_EOL:
        end = "\r\n"
    else:
        end = config.custom_suffix if config.suffix is Suffix.CUSTOM else _SUFFIX_TEXT[config.suffix]
    head = aim.text if aim is not None else ""
    return config.prefix + head + data + end
