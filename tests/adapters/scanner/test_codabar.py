"""NW-7 normalisation and the check-character schemes Japanese libraries use."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from adapters.scanner.codabar import (
    DATA_CHARS,
    Case,
    CheckIn,
    CheckScheme,
    CodabarConfig,
    CodabarScan,
    DsrZero,
    GuardsIn,
    Mod11Rule,
    Mod11Weights,
    Output,
    check_character,
    decode_codabar,
    encode_codabar,
)
from adapters.scanner.codec import CodabarError
from gateway.errors import ConfigError

S = CheckScheme
DIGIT_SCHEMES = [s for s in CheckScheme if s not in (S.NONE, S.MOD16)]


def cd(data: str, scheme: CheckScheme, **kw: object) -> str:
    return check_character(data, CodabarConfig(scheme=scheme, **kw))  # type: ignore[arg-type]


# --- golden vectors, each from the public document named next to it ---------------------------

GOLDEN = [
    # barcode-net.com/chisiki/modulus16.html: A37859B -> sum 65, 65 mod 16 = 1, 16 - 1 = 15 = "+"
    ("37859", S.MOD16, {"library_guards": "AB"}, "+"),
    # aimjal.co.jp/gijutu/barcode/nw-7.html (M10W21 分割): 12345678 -> 38 -> CD 2
    ("12345678", S.MOD10_W21_SPLIT, {}, "2"),
    # same page (M10W21 一括): 12345678 -> sum of products 56 -> 10 - 6 = 4
    ("12345678", S.MOD10_W21_BULK, {}, "4"),
    # qiita.com/yoshi389111/items/00ca7b3ed9ceac904cde (Luhn): 20151119 -> 3; 20151149 -> sum 20 -> 0
    ("20151119", S.MOD10_W21_SPLIT, {}, "3"),
    ("20151149", S.MOD10_W21_SPLIT, {}, "0"),
    # gist.github.com/fordmadox/0a1efa9f96f75d8e06e1: 14-digit library Codabar, Luhn, "should be 6"
    ("3900204393039", S.MOD10_W21_SPLIT, {}, "6"),
    # activebarcode.com/ja/codes/checkdigit/modulo10.html (weights 3,1): 400763000011 -> 6
    ("400763000011", S.MOD10_W31, {}, "6"),
    # itpfdoc.hitachi.co.jp LXRPIZ04 (modulus 11, weights 2-7): 12345 -> 50 mod 11 = 6 -> 5
    ("12345", S.MOD11, {}, "5"),
    # mimosa.gr.jp/toitsu/check_digit.html (7DR): 123456 -> 17636 rest 4
    ("123456", S.DR7, {}, "4"),
    # nanoappli.com/blog/archives/369 (7DR, Yamato slip): 12345678901 -> rest 3
    ("12345678901", S.DR7, {}, "3"),
    # okusu.net/3362/3362 (7DR): 99991234567 -> rest 0
    ("99991234567", S.DR7, {}, "0"),
]


@pytest.mark.parametrize(("data", "scheme", "extra", "expected"), GOLDEN)
def test_golden_check_characters(data: str, scheme: CheckScheme, extra: dict[str, object], expected: str) -> None:
    assert cd(data, scheme, **extra) == expected


def test_modulus16_golden_symbol_verifies_and_normalises() -> None:
    config = CodabarConfig(scheme=S.MOD16, guards_in=GuardsIn.PRESENT, keep_guards=Output.KEEP)
    assert decode_codabar("A37859+B", config) == CodabarScan(
        value="A37859+B", data="37859", check="+", start="A", stop="B"
    )
    assert encode_codabar("37859", config) == "A37859+B"


@pytest.mark.parametrize(
    ("data", "scheme", "dsr_zero", "expected"),
    [
        # 7DSR = 7 - 7DR remainder: 123456 rest 4 -> 3
        ("123456", S.DSR7, DsrZero.ZERO, "3"),
        # remainder 0: PFU ScanConnect FAQ gives 7DSR the range 0-6, others write 7
        ("99991234567", S.DSR7, DsrZero.ZERO, "0"),
        ("99991234567", S.DSR7, DsrZero.MODULUS, "7"),
        # 9DR/9DSR: 123456 mod 9 = 3 (digit sum 21); 123453 mod 9 = 0
        ("123456", S.DR9, DsrZero.ZERO, "3"),
        ("123456", S.DSR9, DsrZero.ZERO, "6"),
        ("123453", S.DSR9, DsrZero.ZERO, "0"),
        ("123453", S.DSR9, DsrZero.MODULUS, "9"),
    ],
)
def test_dr_and_dsr_remainder_rules(data: str, scheme: CheckScheme, dsr_zero: DsrZero, expected: str) -> None:
    assert cd(data, scheme, dsr_zero=dsr_zero) == expected


def test_modulus11_remainder_rules() -> None:
    # 00014: sum 4*2 + 1*3 = 11 -> remainder 0 -> CD 0 under every rule
    assert cd("00014", S.MOD11, mod11_rule=Mod11Rule.R1_INVALID) == "0"
    # 00006: sum 12 -> remainder 1: Hitachi's rule writes 0, the strict rule has no check digit
    assert cd("00006", S.MOD11, mod11_rule=Mod11Rule.R01_ZERO) == "0"
    with pytest.raises(CodabarError) as err:
        cd("00006", S.MOD11, mod11_rule=Mod11Rule.R1_INVALID)
    assert err.value.code == "codabar_no_check_digit"
    assert str(err.value) == (
        "codabar: modulus 11 leaves remainder 1, for which no check digit exists, got such a number; "
        "numbers with remainder 1 are never issued under this rule"
    )
    # weights 2-9 differ from 2-7 from the 7th digit on: 1000000 -> weight 8 vs 2
    assert cd("1000000", S.MOD11, mod11_weights=Mod11Weights.W2_9) == "3"  # 8 -> 11 - 8
    assert cd("1000000", S.MOD11, mod11_weights=Mod11Weights.W2_7) == "9"  # 2 -> 11 - 2


# --- decoding and normalisation ------------------------------------------------------------


def test_lower_case_guards_from_the_scanner_are_read_and_kept_per_config() -> None:
    config = CodabarConfig(scheme=S.DR7, guards_in=GuardsIn.PRESENT, keep_guards=Output.KEEP, guard_case=Case.LOWER)
    scan = decode_codabar("a1234564b", config)
    assert (scan.value, scan.start, scan.stop) == ("a1234564b", "A", "B")


def test_guards_stripped_by_scanner_use_library_guards_for_modulus16_and_output() -> None:
    config = CodabarConfig(
        scheme=S.MOD16,
        guards_in=GuardsIn.ABSENT,
        library_guards="ab",
        keep_guards=Output.KEEP,
        keep_check=Output.STRIP,
    )
    scan = decode_codabar("37859+", config)
    assert scan == CodabarScan(value="A37859B", data="37859", check="+", start=None, stop=None)


def test_check_character_stripped_by_scanner_is_not_verified() -> None:
    config = CodabarConfig(scheme=S.DR7, check_in=CheckIn.STRIPPED, keep_check=Output.STRIP)
    assert decode_codabar("123456", config).value == "123456"


def test_no_scheme_keeps_symbols_and_data() -> None:
    assert decode_codabar("A12-34$B", CodabarConfig()).value == "12-34$"


@pytest.mark.parametrize(
    ("text", "config", "code", "message"),
    [
        ("", CodabarConfig(), "codabar_empty",
         "codabar: empty scan, got ''; check the scanner's prefix/suffix settings"),
        ("A1234", CodabarConfig(), "codabar_guard_unbalanced",
         "codabar: start/stop character on one end only, got 5 characters; the read was cut short; scan again"),
        ("A", CodabarConfig(), "codabar_guard_unbalanced",
         "codabar: start/stop character on one end only, got 1 characters; the read was cut short; scan again"),
        ("1234", CodabarConfig(guards_in=GuardsIn.PRESENT), "codabar_guards_missing",
         "codabar: start/stop characters expected, got none; "
         "enable start/stop transmission on the scanner or set guards_in"),
        ("C1234D", CodabarConfig(guards_in=GuardsIn.ABSENT), "codabar_guards_unexpected",
         "codabar: start/stop characters not expected, got 'C'...'D'; "
         "disable start/stop transmission on the scanner or set guards_in"),
        ("A12X4B", CodabarConfig(), "codabar_bad_character",
         "codabar: character 4 is not an NW-7 character, got 'X'; "
         "NW-7 carries 0-9 - $ : / . + between the start/stop characters"),
        ("12 4", CodabarConfig(), "codabar_bad_character",
         "codabar: character 3 is not an NW-7 character, got ' '; "
         "NW-7 carries 0-9 - $ : / . + between the start/stop characters"),
        ("A1234B", CodabarConfig(min_length=5, max_length=8), "codabar_length",
         "codabar: 4 data characters, expected 5..8, got 4; a partial read or a label from another system"),
        ("A1B", CodabarConfig(scheme=S.DR7), "codabar_length",
         "codabar: 0 data characters, expected 1..32, got 0; a partial read or a label from another system"),
        ("A37859-B", CodabarConfig(scheme=S.MOD16, guards_in=GuardsIn.PRESENT), "codabar_check_mismatch",
         "codabar: check character does not match mod16, got '-'; "
         "a misread (scan again) or the wrong check scheme in the config"),
        ("A12-45B", CodabarConfig(scheme=S.MOD10_W21_SPLIT), "codabar_not_numeric",
         "codabar: check scheme mod10_w21_split needs a number of 1..64 digits, got 4 characters; "
         "these labels use modulus 16 or no check character"),
    ],
)  # fmt: skip
def test_decode_errors_tell_the_technician_what_to_do(
    text: str, config: CodabarConfig, code: str, message: str
) -> None:
    with pytest.raises(CodabarError) as err:
        decode_codabar(text, config)
    assert (err.value.code, str(err.value)) == (code, message)


def test_errors_carry_named_parameters() -> None:
    with pytest.raises(CodabarError) as err:
        decode_codabar("A1234560B", CodabarConfig(scheme=S.DR7))
    assert err.value.params == {"scheme": "7dr", "got": "0"}


def test_check_character_errors() -> None:
    with pytest.raises(CodabarError) as err:
        check_character("123", CodabarConfig())
    assert str(err.value) == "codabar: no check-character scheme configured, got 'none'"
    with pytest.raises(CodabarError) as err:
        check_character("123", CodabarConfig(scheme=S.MOD16, guards_in=GuardsIn.PRESENT))
    assert str(err.value) == (
        "codabar: modulus 16 needs one start and one stop character (A-D), got ''; set library_guards"
    )
    with pytest.raises(CodabarError) as err:
        check_character("123", CodabarConfig(scheme=S.MOD16, library_guards="AB"), start="A", stop="X")
    assert err.value.code == "codabar_guards_missing"
    with pytest.raises(CodabarError) as err:
        check_character("1X3", CodabarConfig(scheme=S.MOD16, library_guards="AB"))
    assert str(err.value) == "codabar: data must be NW-7 characters (0-9 - $ : / . +), got 3 characters"
    with pytest.raises(CodabarError) as err:
        check_character("1" * 65, CodabarConfig(scheme=S.DR7))
    assert err.value.code == "codabar_not_numeric"


def test_encode_errors() -> None:
    with pytest.raises(CodabarError) as err:
        encode_codabar("", CodabarConfig())
    assert str(err.value) == ("codabar: data must be 1+ NW-7 characters (0-9 - $ : / . +), got 0 characters")
    with pytest.raises(CodabarError) as err:
        encode_codabar("12", CodabarConfig(), start="AB")
    assert str(err.value) == "codabar: start/stop must be one of A B C D, got 'AB'/'B'"
    with pytest.raises(CodabarError) as err:
        encode_codabar("12", CodabarConfig(), stop="x")
    assert err.value.code == "codabar_bad_guard"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"library_guards": "AX"}, "scanner.codabar.library_guards: must be two of A B C D, got 'AX'; "
         'write the start and stop printed on the labels, e.g. "AB"'),
        ({"library_guards": "A"}, "scanner.codabar.library_guards: must be two of A B C D, got 'A'; "
         'write the start and stop printed on the labels, e.g. "AB"'),
        ({"min_length": 0}, "scanner.codabar.min_length/max_length: need 1 <= min <= max <= 64, got 0/32"),
        ({"min_length": 9, "max_length": 8},
         "scanner.codabar.min_length/max_length: need 1 <= min <= max <= 64, got 9/8"),
        ({"max_length": 65}, "scanner.codabar.min_length/max_length: need 1 <= min <= max <= 64, got 1/65"),
        ({"scheme": S.MOD16}, "scanner.codabar.library_guards: modulus 16 counts start/stop, got none while "
         "guards_in is 'either'; set library_guards or make the scanner send start/stop"),
        ({"keep_guards": Output.KEEP, "guards_in": GuardsIn.ABSENT},
         "scanner.codabar.library_guards: keep_guards = 'keep' needs them, got none while guards_in is "
         "'absent'; set library_guards or strip the guards"),
        ({"scheme": S.DR7, "check_in": CheckIn.STRIPPED},
         "scanner.codabar.keep_check: the scanner strips the check character, got 'keep'; "
         "set keep_check = 'strip' or make the scanner send it"),
    ],
)  # fmt: skip
def test_bad_config_is_rejected_not_repaired(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        CodabarConfig(**kwargs)  # type: ignore[arg-type]
    assert err.value.errors == [message]


# --- properties ----------------------------------------------------------------------------


@st.composite
def configs(draw: st.DrawFn) -> CodabarConfig:
    try:
        return CodabarConfig(
            scheme=draw(st.sampled_from(CheckScheme)),
            guards_in=draw(st.sampled_from(GuardsIn)),
            check_in=draw(st.sampled_from(CheckIn)),
            keep_guards=draw(st.sampled_from(Output)),
            keep_check=draw(st.sampled_from(Output)),
            guard_case=draw(st.sampled_from(Case)),
            library_guards=draw(st.sampled_from(["", "AB", "ab", "DC", "AA"])),
            dsr_zero=draw(st.sampled_from(DsrZero)),
            mod11_weights=draw(st.sampled_from(Mod11Weights)),
            mod11_rule=draw(st.sampled_from(Mod11Rule)),
        )
    except ConfigError:
        assume(False)
        raise  # pragma: no cover - assume() never returns here


def data_for(scheme: CheckScheme) -> st.SearchStrategy[str]:
    alphabet = "0123456789" if scheme in DIGIT_SCHEMES else DATA_CHARS
    return st.text(alphabet=alphabet, min_size=1, max_size=32)


@settings(max_examples=400)
@given(config=configs(), data=st.data(), guards=st.sampled_from(["AB", "CD", "DA"]), case=st.sampled_from(Case))
def test_encode_then_decode_round_trips_for_every_option(
    config: CodabarConfig, data: st.DataObject, guards: str, case: Case
) -> None:
    payload = data.draw(data_for(config.scheme))
    try:
        symbol = encode_codabar(payload, config, start=guards[0], stop=guards[1], case=case)
    except CodabarError as err:
        assert err.code == "codabar_no_check_digit"  # noqa: PT017 -- raising is optional in this property; modulus 11, remainder 1, strict rule
        return
    scan = decode_codabar(symbol, config)
    assert scan.data == payload
    sent = config.scheme is not S.NONE and config.check_in is CheckIn.SENT
    label = (config.library_guards.upper() or guards) if config.guards_in is not GuardsIn.ABSENT else None
    assert (scan.start, scan.stop) == ((label[0], label[1]) if label else (None, None))
    if sent:
        assert scan.check == check_character(payload, config, start=scan.start, stop=scan.stop)
    else:
        assert scan.check is None
    expected = payload + (scan.check or "" if config.keep_check is Output.KEEP else "")
    if config.keep_guards is Output.KEEP:
        first, last = scan.start or config.library_guards[0].upper(), scan.stop or config.library_guards[1].upper()
        if config.guard_case is Case.LOWER:
            first, last = first.lower(), last.lower()
        expected = first + expected + last
    assert scan.value == expected


@settings(max_examples=400)
@given(
    config=configs(),
    text=st.text(alphabet=st.sampled_from(DATA_CHARS + "ABCDabcdXx \r\n\x00é") | st.characters(), max_size=40),
)
def test_arbitrary_text_raises_only_codabar_errors(config: CodabarConfig, text: str) -> None:
    try:
        scan = decode_codabar(text, config)
    except CodabarError:
        return
    assert scan.data and set(scan.data) <= set(DATA_CHARS)


@settings(max_examples=300)
@given(config=configs(), data=st.data())
def test_computed_check_characters_always_verify(config: CodabarConfig, data: st.DataObject) -> None:
    assume(config.scheme is not S.NONE)
    payload = data.draw(data_for(config.scheme))
    try:
        check = check_character(payload, config, start="A", stop="B")
    except CodabarError as err:
        assert err.code in ("codabar_no_check_digit", "codabar_guards_missing")  # noqa: PT017 -- raising is optional in this property: pytest.raises cannot say "may raise"
        return
    relaxed = CodabarConfig(
        scheme=config.scheme,
        guards_in=GuardsIn.PRESENT,
        dsr_zero=config.dsr_zero,
        mod11_weights=config.mod11_weights,
        mod11_rule=config.mod11_rule,
    )
    assert decode_codabar("A" + payload + check + "B", relaxed).check == check


# Single-character substitution: which schemes guarantee detection, and why.
#   MOD16            every data value 0-15 differs from any other by 1..15, never 0 mod 16
#   MOD10_W21_SPLIT  Luhn: x -> digit-sum(2x) is a permutation of 0-9
#   MOD10_W31        x -> 3x mod 10 is a permutation of 0-9
#   MOD11 strict     weights 2-9 < 11 prime; remainder -> check digit is one-to-one when r=1 is void
# Not guaranteed: 7DR/7DSR (0<->7, 1<->8, 2<->9), 9DR/9DSR (0<->9), MOD10_W21_BULK (x and x+5 at a
# weight-2 place), MOD11 with remainders 0 and 1 both written 0. Counterexamples below.
GUARANTEED = [
    CodabarConfig(scheme=S.MOD16, guards_in=GuardsIn.PRESENT),
    CodabarConfig(scheme=S.MOD10_W21_SPLIT),
    CodabarConfig(scheme=S.MOD10_W31),
    CodabarConfig(scheme=S.MOD11, mod11_rule=Mod11Rule.R1_INVALID, mod11_weights=Mod11Weights.W2_7),
    CodabarConfig(scheme=S.MOD11, mod11_rule=Mod11Rule.R1_INVALID, mod11_weights=Mod11Weights.W2_9),
]


@settings(max_examples=500)
@given(config=st.sampled_from(GUARANTEED), data=st.data())
def test_single_substitution_is_always_detected_where_guaranteed(config: CodabarConfig, data: st.DataObject) -> None:
    payload = data.draw(data_for(config.scheme))
    try:
        symbol = encode_codabar(payload, config)
    except CodabarError:
        assume(False)
        raise  # pragma: no cover
    body_index = data.draw(st.integers(min_value=1, max_value=len(symbol) - 2))
    alphabet = "0123456789" if config.scheme in DIGIT_SCHEMES else DATA_CHARS
    replacement = data.draw(st.sampled_from(alphabet).filter(lambda c: c != symbol[body_index]))
    edited = symbol[:body_index] + replacement + symbol[body_index + 1 :]
    with pytest.raises(CodabarError) as err:
        decode_codabar(edited, config)
    assert err.value.code in ("codabar_check_mismatch", "codabar_no_check_digit")


@pytest.mark.parametrize(
    ("config", "original", "edited"),
    [
        (CodabarConfig(scheme=S.DR7), "A700B", "A000B"),
        (CodabarConfig(scheme=S.DSR7), "A700B", "A000B"),
        (CodabarConfig(scheme=S.DR9), "A900B", "A000B"),
        (CodabarConfig(scheme=S.MOD10_W21_BULK), "A50B", "A00B"),
        (CodabarConfig(scheme=S.MOD11, mod11_rule=Mod11Rule.R01_ZERO), "A000140B", "A200140B"),
        # transpositions are never detected by the unweighted schemes
        (CodabarConfig(scheme=S.MOD16, guards_in=GuardsIn.PRESENT), "A12:B", "A21:B"),
        (CodabarConfig(scheme=S.DR9), "A123B", "A213B"),
    ],
)
def test_schemes_without_the_guarantee_have_counterexamples(config: CodabarConfig, original: str, edited: str) -> None:
    assert decode_codabar(original, config).data != decode_codabar(edited, config).data


def test_encode_writes_what_the_scanner_sends() -> None:
    dr7 = CodabarConfig(scheme=S.DR7)
    assert encode_codabar("123456", dr7, start="C", stop="D", case=Case.LOWER) == "c1234564d"
    assert encode_codabar("123456", CodabarConfig(scheme=S.DR7, guards_in=GuardsIn.ABSENT)) == "1234564"
    stripped = CodabarConfig(scheme=S.DR7, check_in=CheckIn.STRIPPED, keep_check=Output.STRIP)
    assert encode_codabar("123456", stripped) == "A123456B"
    assert encode_codabar("12", CodabarConfig(library_guards="dc"), start="A", stop="B") == "D12C"
