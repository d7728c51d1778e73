"""Codabar / NW-7 (JIS X 0506): normalise a scan and compute or verify the library's check character."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from operator import mul

from gateway.errors import ConfigError

from .codec import CodabarError

__all__ = [
    "DATA_CHARS",
    "GUARD_CHARS",
    "Case",
    "CheckIn",
    "CheckScheme",
    "CodabarConfig",
    "CodabarScan",
    "DsrZero",
    "GuardsIn",
    "Mod11Rule",
    "Mod11Weights",
    "Output",
    "check_character",
    "decode_codabar",
    "encode_codabar",
]

# Character values are those of the modulus-16 table (barcode-net.com/chisiki/modulus16.html).
DATA_CHARS = "0123456789-$:/.+"
GUARD_CHARS = "ABCD"
_DATA_SET = frozenset(DATA_CHARS)
_DIGIT_SET = frozenset("0123456789")
_GUARD_SET = frozenset(GUARD_CHARS)
# Scanners send start/stop as A-D or a-d depending on a setting; both mean the same guard.
_GUARD = {c: c for c in GUARD_CHARS} | {c.lower(): c for c in GUARD_CHARS}
# Luhn: a doubled digit contributes the sum of its two decimal digits ("split" / 分割).
_LUHN_DOUBLE = str.maketrans("0123456789", "0246813579")
# Modulus 11 weights from the rightmost data digit, long enough for the 64-digit maximum.
_MOD11_W2_7 = tuple(2 + i % 6 for i in range(64))
_MOD11_W2_9 = tuple(2 + i % 8 for i in range(64))
# Modulus 16 character values as bytes, so a translated scan sums in C.
_MOD16_BYTES = bytes.maketrans((DATA_CHARS + GUARD_CHARS).encode(), bytes(range(len(DATA_CHARS + GUARD_CHARS))))


class CheckScheme(Enum):
    """The check-character rule a library printed on its labels (NW-7 itself mandates none)."""

    NONE = "none"
    MOD16 = "mod16"  # sum of all character values incl. start/stop; CD = (16 - sum mod 16) mod 16
    DR7 = "7dr"  # CD = number mod 7
    DSR7 = "7dsr"  # CD = 7 - (number mod 7); remainder 0 per DsrZero
    DR9 = "9dr"  # CD = number mod 9
    DSR9 = "9dsr"  # CD = 9 - (number mod 9); remainder 0 per DsrZero
    MOD10_W21_SPLIT = "mod10_w21_split"  # Luhn: weights 2,1 from the right, products digit-summed
    MOD10_W21_BULK = "mod10_w21_bulk"  # weights 2,1 from the right, products summed as numbers
    MOD10_W31 = "mod10_w31"  # weights 3,1 from the right (the EAN rule)
    MOD11 = "mod11"  # weights 2..7 or 2..9 from the right; CD = 11 - remainder per Mod11Rule


class DsrZero(Enum):
    """What 7DSR/9DSR write when the number divides evenly (vendors differ)."""

    ZERO = "zero"  # CD = (m - r) mod m: range 0..6 / 0..8 (PFU ScanConnect FAQ)
    MODULUS = "modulus"  # CD = m - r: range 1..7 / 1..9


class Mod11Weights(Enum):
    W2_7 = "2-7"  # 2,3,4,5,6,7,2,3,... from the rightmost data digit
    W2_9 = "2-9"  # 2,3,...,9,2,3,... from the rightmost data digit


class Mod11Rule(Enum):
    """Modulus 11 leaves remainders 0 and 1 without a one-digit complement; schemes differ."""

    R01_ZERO = "remainder_0_1_zero"  # r in {0,1} -> 0, else 11 - r (Hitachi LXRPIZ04)
    R1_INVALID = "remainder_1_invalid"  # r = 0 -> 0, r = 1 -> such numbers are never issued


class GuardsIn(Enum):
    """Whether the scanner transmits the start/stop characters."""

    PRESENT = "present"
    ABSENT = "absent"
    EITHER = "either"


class CheckIn(Enum):
    """Whether the scanner transmits the check character or strips it after checking it."""

    SENT = "sent"
    STRIPPED = "stripped"


class Output(Enum):
    KEEP = "keep"
    STRIP = "strip"


class Case(Enum):
    UPPER = "upper"
    LOWER = "lower"


_DIGIT_SCHEMES = frozenset(CheckScheme) - {CheckScheme.NONE, CheckScheme.MOD16}


@dataclass(frozen=True, kw_only=True, slots=True)
class CodabarConfig:
    """One library's NW-7 rules: what the scanner sends and how the stored id is normalised."""

    scheme: CheckScheme = CheckScheme.NONE
    guards_in: GuardsIn = GuardsIn.EITHER
    check_in: CheckIn = CheckIn.SENT
    keep_guards: Output = Output.STRIP
    keep_check: Output = Output.KEEP
    guard_case: Case = Case.UPPER
    # The start/stop pair printed on the library's labels (e.g. "AB"); needed when the scanner strips
    # them but modulus 16 or the stored form still counts them.
    library_guards: str = ""
    dsr_zero: DsrZero = DsrZero.ZERO
    mod11_weights: Mod11Weights = Mod11Weights.W2_7
    mod11_rule: Mod11Rule = Mod11Rule.R01_ZERO
    min_length: int = 1  # data characters, without start/stop and check character
    max_length: int = 32

    def __post_init__(self) -> None:
        errors: list[str] = []
        where = "scanner.codabar"
        if self.library_guards and (
            len(self.library_guards) != 2 or not set(self.library_guards.upper()) <= set(GUARD_CHARS)
        ):
            errors.append(
                f"{where}.library_guards: must be two of A B C D, got {self.library_guards!r}; "
                'write the start and stop printed on the labels, e.g. "AB"'
            )
        if not 1 <= self.min_length <= self.max_length <= 64:
            errors.append(
                f"{where}.min_length/max_length: need 1 <= min <= max <= 64, got {self.min_length}/{self.max_length}"
            )
        guards_unknown = self.guards_in is not GuardsIn.PRESENT and not self.library_guards
        if guards_unknown and self.scheme is CheckScheme.MOD16:
            errors.append(
                f"{where}.library_guards: modulus 16 counts start/stop, got none while guards_in is "
                f"{self.guards_in.value!r}; set library_guards or make the scanner send start/stop"
            )
        if guards_unknown and self.keep_guards is Output.KEEP:
            errors.append(
                f"{where}.library_guards: keep_guards = 'keep' needs them, got none while guards_in "
                f"is {self.guards_in.value!r}; set library_guards or strip the guards"
            )
        if self.scheme is not CheckScheme.NONE and self.check_in is CheckIn.STRIPPED and self.keep_check is Output.KEEP:
            errors.append(
                f"{where}.keep_check: the scanner strips the check character, got 'keep'; "
                "set keep_check = 'strip' or make the scanner send it"
            )
        if errors:
            raise ConfigError(errors)


@dataclass(frozen=True, kw_only=True, slots=True)
class CodabarScan:
    """A verified NW-7 scan: `value` is the id to store, normalised per the library's config."""

    value: str
    data: str
    check: str | None  # the verified check character, None when there is none or it was stripped
    start: str | None  # start/stop as scanned, upper case; None when the scanner stripped them
    stop: str | None


def _fail(code: str, what: str, value: object, fix: str = "", /, **params: object) -> CodabarError:
    tail = f"; {fix}" if fix else ""
    return CodabarError(code, f"codabar: {what}, got {value}{tail}", **params)


def check_character(data: str, config: CodabarConfig, *, start: str | None = None, stop: str | None = None) -> str:
    """The check character `config.scheme` gives `data` (start/stop count only for modulus 16)."""
    scheme = config.scheme
    if scheme is CheckScheme.MOD16:
        guards = (start + stop).upper() if start and stop else config.library_guards.upper()
        if len(guards) != 2 or not _GUARD_SET.issuperset(guards):
            raise _fail(
                "codabar_guards_missing",
                "modulus 16 needs one start and one stop character (A-D)",
                repr(guards),
                "set library_guards",
            )
        if not _DATA_SET.issuperset(data):
            raise _fail(
                "codabar_bad_character",
                "data must be NW-7 characters (0-9 - $ : / . +)",
                f"{len(data)} characters",
            )
        total = sum((guards + data).encode().translate(_MOD16_BYTES))
        return DATA_CHARS[-total % 16]
    if scheme is CheckScheme.NONE:
        raise _fail("codabar_no_scheme", "no check-character scheme configured", "'none'")
    if not 0 < len(data) <= 64 or not _DIGIT_SET.issuperset(data):
        raise _fail(
            "codabar_not_numeric",
            f"check scheme {scheme.value} needs a number of 1..64 digits",
            f"{len(data)} characters",
            "these labels use modulus 16 or no check character",
            scheme=scheme.value,
        )
    if scheme is CheckScheme.DR7:
        return str(int(data) % 7)
    if scheme is CheckScheme.DR9:
        return str(int(data) % 9)
    if scheme is CheckScheme.DSR7 or scheme is CheckScheme.DSR9:
        modulus = 7 if scheme is CheckScheme.DSR7 else 9
        digit = modulus - int(data) % modulus
        if digit == modulus and config.dsr_zero is DsrZero.ZERO:
            digit = 0
        return str(digit)
    if scheme is CheckScheme.MOD11:
        return _mod11(data, config)
    # The rightmost data digit carries the heavy weight (2 or 3). Digit sums go through bytes:
    # summing ASCII codes and removing 48 per digit runs in C instead of a per-digit Python loop.
    heavy = data[-1::-2]
    light = data[-2::-2]
    total = sum(light.encode()) - 48 * len(light)
    if scheme is CheckScheme.MOD10_W21_SPLIT:
        total += sum(heavy.translate(_LUHN_DOUBLE).encode()) - 48 * len(heavy)
    else:
        weight = 3 if scheme is CheckScheme.MOD10_W31 else 2
        total += weight * (sum(heavy.encode()) - 48 * len(heavy))
    return str(-total % 10)


def _mod11(data: str, config: CodabarConfig) -> str:
    weights = _MOD11_W2_7 if config.mod11_weights is Mod11Weights.W2_7 else _MOD11_W2_9
    raw = data[::-1].encode()
    total = sum(map(mul, weights, raw)) - 48 * sum(weights[: len(raw)])
    remainder = total % 11
    if remainder == 1 and config.mod11_rule is Mod11Rule.R1_INVALID:
        raise _fail(
            "codabar_no_check_digit",
            "modulus 11 leaves remainder 1, for which no check digit exists",
            "such a number",
            "numbers with remainder 1 are never issued under this rule",
        )
    return "0" if remainder <= 1 else str(11 - remainder)


def decode_codabar(text: str, config: CodabarConfig) -> CodabarScan:
    """Check one NW-7 scan (framing already removed) against `config` and normalise it."""
    if not text:
        raise _fail("codabar_empty", "empty scan", "''", "check the scanner's prefix/suffix settings")
    start = _GUARD.get(text[0])
    stop = _GUARD.get(text[-1])
    if start is not None and stop is not None and len(text) >= 2:
        body = text[1:-1]
    elif start is None and stop is None:
        body = text
    else:
        raise _fail(
            "codabar_guard_unbalanced",
            "start/stop character on one end only",
            f"{len(text)} characters",
            "the read was cut short; scan again",
        )
    if start is None:
        if config.guards_in is GuardsIn.PRESENT:
            raise _fail(
                "codabar_guards_missing",
                "start/stop characters expected",
                "none",
                "enable start/stop transmission on the scanner or set guards_in",
            )
    elif config.guards_in is GuardsIn.ABSENT:
        raise _fail(
            "codabar_guards_unexpected",
            "start/stop characters not expected",
            f"{start!r}...{stop!r}",
            "disable start/stop transmission on the scanner or set guards_in",
        )
    if not _DATA_SET.issuperset(body):
        for index, ch in enumerate(body):  # pragma: no branch - the set test guarantees a hit
            if ch not in _DATA_SET:
                position = index + (2 if start else 1)
                raise _fail(
                    "codabar_bad_character",
                    f"character {position} is not an NW-7 character",
                    repr(ch),
                    "NW-7 carries 0-9 - $ : / . + between the start/stop characters",
                    position=position,
                    char=ch,
                )
    check: str | None = None
    data = body
    if config.scheme is not CheckScheme.NONE and config.check_in is CheckIn.SENT:
        data = body[:-1]
        check = body[-1:]
    if not config.min_length <= len(data) <= config.max_length:
        raise _fail(
            "codabar_length",
            f"{len(data)} data characters, expected {config.min_length}..{config.max_length}",
            len(data),
            "a partial read or a label from another system",
            length=len(data),
        )
    if check is not None:
        expected = check_character(data, config, start=start, stop=stop)
        if check != expected:
            raise _fail(
                "codabar_check_mismatch",
                f"check character does not match {config.scheme.value}",
                repr(check),
                "a misread (scan again) or the wrong check scheme in the config",
                scheme=config.scheme.value,
                got=check,
            )
    return CodabarScan(
        value=_normalised(data, check, start, stop, config),
        data=data,
        check=check,
        start=start,
        stop=stop,
    )


def _normalised(data: str, check: str | None, start: str | None, stop: str | None, config: CodabarConfig) -> str:
    value = data + check if check is not None and config.keep_check is Output.KEEP else data
    if config.keep_guards is Output.STRIP:
        return value
    first = start or config.library_guards[0].upper()
    last = stop or config.library_guards[1].upper()
    if config.guard_case is Case.LOWER:
        first, last = first.lower(), last.lower()
    return first + value + last


def encode_codabar(
    data: str,
    config: CodabarConfig,
    *,
    start: str = "A",
    stop: str = "B",
    case: Case = Case.UPPER,
) -> str:
    """What a scanner set up per `config` sends for a label carrying `data` (with check character).

    The label's start/stop are `config.library_guards` when set, else `start`/`stop`.
    """
    if not data or not _DATA_SET.issuperset(data):
        raise _fail(
            "codabar_bad_character",
            "data must be 1+ NW-7 characters (0-9 - $ : / . +)",
            f"{len(data)} characters",
        )
    if config.library_guards:
        start, stop = config.library_guards[0].upper(), config.library_guards[1].upper()
    elif start not in _GUARD_SET or stop not in _GUARD_SET:
        raise _fail("codabar_bad_guard", "start/stop must be one of A B C D", f"{start!r}/{stop!r}")
    body = data
    if config.scheme is not CheckScheme.NONE and config.check_in is CheckIn.SENT:
        body += check_character(data, config, start=start, stop=stop)
    if config.guards_in is GuardsIn.ABSENT:
        return body
    if case is Case.LOWER:
        start, stop = start.lower(), stop.lower()
    return start + body + stop
