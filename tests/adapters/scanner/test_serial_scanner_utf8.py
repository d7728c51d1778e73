"""Serial scans are decoded one by one: a character cut by a read, or one bad scan, costs no other scan.

Regression (review s20, utf8_split.py): `LineSplitter.feed` decoded each read on its own, so a UTF-8
character split across two reads lost both scans it touched (an ASCII one too), and two whole scans
read together with one noise byte were dropped with it.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.scanner.aim import AimPolicy, FramingConfig, Suffix
from adapters.scanner.serial_scanner import LineSplitter, SerialScan

NOT_UTF8 = "scanner framing: scan is not UTF-8, got byte 0xff at {}; check the scanner's character set / baud rate"


def outcome(scans: list[SerialScan]) -> list[tuple[str, str]]:
    return [(s.framed.data, "") if s.framed else ("", str(s.error)) for s in scans]


def test_a_character_cut_by_the_read_boundary_loses_nothing() -> None:
    data = "VQ1:図書館\r".encode() + b"A1B\r"
    splitter = LineSplitter(FramingConfig())
    got = splitter.feed(data[:5], 0.0) + splitter.feed(data[5:], 0.0)  # cut inside 図
    assert outcome(got) == [("VQ1:図書館", ""), ("A1B", "")]


def test_one_noise_byte_after_two_whole_scans_costs_only_its_own_scan() -> None:
    splitter = LineSplitter(FramingConfig())
    assert outcome(splitter.feed(b"A73100001B\r" + b"C000000059C\r" + b"\xff", 0.0)) == [
        ("A73100001B", ""),
        ("C000000059C", ""),
    ]
    assert outcome(splitter.feed(b"\r", 0.0)) == [("", NOT_UTF8.format(0))]


def test_a_bad_scan_between_good_ones_is_refused_alone_naming_its_byte() -> None:
    splitter = LineSplitter(FramingConfig(aim=AimPolicy.ABSENT))
    got = splitter.feed(b"A1\rB2\xff3\r\xe5\x9b\xb3\r", 0.0)
    assert outcome(got) == [("A1", ""), ("", NOT_UTF8.format(2)), ("図", "")]
    assert got[1].error is not None and got[1].error.code == "framing_encoding"


# --- any split of a stream gives the scans feeding it whole gives ---------------------------------

CONFIGS = [
    FramingConfig(suffix=Suffix.CR),
    FramingConfig(suffix=Suffix.CRLF),
    FramingConfig(suffix=Suffix.ANY_EOL),
    FramingConfig(suffix=Suffix.CUSTOM, custom_suffix="§#", aim=AimPolicy.ABSENT),
]
SUFFIX_BYTES = {Suffix.CR: b"\r", Suffix.CRLF: b"\r\n", Suffix.ANY_EOL: b"\n"}

# text without line ends; bytes without them either, valid UTF-8 or not
texts = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\t§#"), max_size=12)
noise = st.binary(max_size=12).map(lambda b: bytes(c for c in b if c not in b"\r\n\t#"))
scan_bodies = st.one_of(texts.map(str.encode), noise)


@settings(max_examples=400)
@given(
    config=st.sampled_from(CONFIGS),
    bodies=st.lists(scan_bodies.filter(bool), max_size=8),  # an empty line is no scan
    tail=scan_bodies,
    cuts=st.lists(st.integers(0, 200), max_size=8),
)
def test_any_split_gives_the_same_scans_as_one_read(
    config: FramingConfig, bodies: list[bytes], tail: bytes, cuts: list[int]
) -> None:
    end = SUFFIX_BYTES.get(config.suffix, config.custom_suffix.encode())
    stream = b"".join(body + end for body in bodies) + tail  # the tail: a scan not ended yet
    whole = LineSplitter(config)
    expected = outcome(whole.feed(stream, 0.0))
    split = LineSplitter(config)
    got: list[SerialScan] = []
    at = 0
    for cut in sorted({c for c in cuts if c < len(stream)}):
        got += split.feed(stream[at:cut], 0.0)
        at = cut
    got += split.feed(stream[at:], 0.0)
    assert outcome(got) == expected
    assert len(expected) == len(bodies)  # one outcome per ended scan, good or refused
    for scan, body in zip(got, bodies, strict=True):
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            assert scan.error is not None and scan.error.code == "framing_encoding"
        else:
            assert scan.error is None or scan.error.code != "framing_encoding"
        if scan.framed is not None:
            scan.framed.data.encode("utf-8")  # no undecodable byte smuggled through as a surrogate
