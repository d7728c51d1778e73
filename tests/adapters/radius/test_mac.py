"""MAC spellings from NASes and APs normalise to one form; masks never leak the device part."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from adapters.radius.errors import MacAddressError
from adapters.radius.mac import MacAddress, mask_mac, mask_text, normalize_mac, redact_macs, split_called_station_id


@pytest.mark.parametrize(
    "spelling",
    [
        "AA:BB:CC:DD:EE:0F",
        "aa:bb:cc:dd:ee:0f",
        "AA-BB-CC-DD-EE-0F",
        "aabb.ccdd.ee0f",
        "AABB.CCDD.EE0F",
        "aabbccddee0f",
        "AABBCC-DDEE0F",
        "aabbcc:ddee0f",
        "aa:bb:cc:dd:ee:f",
        "  aa-bb-cc-dd-ee-0f\n",
    ],
)
def test_every_vendor_spelling_normalises(spelling: str) -> None:
    assert normalize_mac(spelling) == "aa:bb:cc:dd:ee:0f"


@pytest.mark.parametrize(
    "bad", ["", "aa:bb:cc:dd:ee", "aa:bb-cc:dd:ee:ff", "gg:bb:cc:dd:ee:ff", "aabbccddeeff00", "0123456789"]
)
def test_not_a_mac(bad: str) -> None:
    with pytest.raises(MacAddressError) as err:
        normalize_mac(bad, where="radius Calling-Station-Id")
    assert err.value.code == "mac_invalid"
    assert str(err.value) == (
        f"radius Calling-Station-Id: not a MAC address, got {mask_text(bad)}; "
        "expected AA:BB:CC:DD:EE:FF, AA-BB-CC-DD-EE-FF, aabb.ccdd.eeff or aabbccddeeff"
    )


def test_error_text_masks_the_value() -> None:
    with pytest.raises(MacAddressError) as err:
        normalize_mac("aa:bb:cc:dd:ee:fg")
    assert "dd:ee" not in str(err.value) and "dd:ee" not in repr(err.value) and "dd:ee" not in str(err.value.params)
    assert str(err.value).startswith('mac address: not a MAC address, got "aa:b***" (17 chars)')


def test_mac_address_value_repr_and_str() -> None:
    mac = MacAddress.parse("AA-BB-CC-DD-EE-FF")
    assert mac.value == "aa:bb:cc:dd:ee:ff"
    assert mac.oui == "aa:bb:cc"
    assert repr(mac) == "MacAddress('aa:bb:cc:**:**:**')"
    assert str(mac) == "aa:bb:cc:**:**:**" == mask_mac(mac.value)
    assert f"{mac}" == "aa:bb:cc:**:**:**"


@pytest.mark.parametrize(
    ("called", "mac", "ssid"),
    [
        ("00-11-22-33-44-55:FreeWiFi", "00:11:22:33:44:55", "FreeWiFi"),
        ("00:11:22:33:44:55:Kobe City Wi-Fi", "00:11:22:33:44:55", "Kobe City Wi-Fi"),
        ("0011.2233.4455:a:b", "00:11:22:33:44:55", "a:b"),
        ("001122-334455:x", "00:11:22:33:44:55", "x"),
        ("001122334455:SSID", "00:11:22:33:44:55", "SSID"),
        ("00-11-22-33-44-55", "00:11:22:33:44:55", None),
        ("00-11-22-33-44-55:", "00:11:22:33:44:55", None),
    ],
)
def test_called_station_id_splits(called: str, mac: str, ssid: str | None) -> None:
    ap, got_ssid = split_called_station_id(called)
    assert ap is not None and ap.value == mac
    assert got_ssid == ssid


@pytest.mark.parametrize("called", ["10.0.0.1", "", "nas-01:ssid", "gg-11-22-33-44-55:x"])
def test_called_station_id_without_mac(called: str) -> None:
    assert split_called_station_id(called) == (None, None)


def test_redact_masks_every_spelling_in_free_text() -> None:
    text = "sta AA-BB-CC-DD-EE-FF then aabb.ccdd.eeff and aabbccddeeff, aabbcc-ddeeff; 12:34 stays"
    assert redact_macs(text) == (
        "sta aa:bb:cc:**:**:** then aa:bb:cc:**:**:** and aa:bb:cc:**:**:**, aa:bb:cc:**:**:**; 12:34 stays"
    )


def test_mask_text_shows_a_prefix_and_length_only() -> None:
    assert mask_text("nemo@example.jp") == '"nemo***" (15 chars)'
    assert mask_text("ab") == '"***" (2 chars)'


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        # a MAC standing alone in a spelling normalize_mac reads: shown as MacAddress shows it
        ("sta AA:BB:CC:DD:EE:FF@realm", "sta aa:bb:cc:**:**:**@realm"),
        ("called 00:11:22:33:44:55:FreeWiFi", "called 00:11:22:**:**:**:FreeWiFi"),
        ("client a:b:c:d:e:f@realm", "client 0a:0b:0c:**:**:**@realm"),
        ("halves aabbcc:ddeeff joined", "halves aa:bb:cc:**:**:** joined"),
        # the rest is gateway.redact's masking: the spelling kept, everything after the vendor's groups hidden
        ("client aabb-ccdd-eeff joined", "client aabb-*** joined"),
        ("client aabb-ccdd-eeff@realm", "client ***@realm"),  # a login name: the e-mail pass takes it whole
        ("cafe-aabb-ccdd-eeff", "cafe-***"),
        ("de:ad:aa:bb:cc:dd:ee:ff", "de:ad:aa:***"),
        ("id 012345-aabbcc-ddeeff", "id 012345-***"),
        ("port 0123-aabb.ccdd.eeff up", "port 0123-*** up"),
        ("mac:aa:bb:cc:dd:ee:ff", "mac:aa:bb:cc:***"),
        ("from fe80::a8bb:ccff:fedd:eeff%wlan0", "from fe80::a8bb:ccff:fe***%wlan0"),
        ("peer [2001:db8::A8BB:CCFF:FEDD:EEFF]:8883", "peer [2001:db8::A8BB:CCFF:FE***]:8883"),
        # and its e-mail masking: a Wi-Fi login is personal data as much as the MAC it came from
        ("eap identity hanako@example.jp", "eap identity ***@example.jp"),
        # not a MAC: a UUID, a digest, a time
        ("entity 6ba7b810-9dad-11d1-80b4-00c04fd430c8", "entity 6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
        ("sha256:" + "0123456789abcdef" * 4, "sha256:" + "0123456789abcdef" * 4),
        ("up 10:21:44", "up 10:21:44"),
    ],
)
def test_redact_masks_glued_and_other_spellings_as_the_log_redactor_does(text: str, shown: str) -> None:
    """Regression: redact_macs (reprs and errors of the Wi-Fi codecs) showed every one of these MACs but
    the first two in clear, or the last octets of the glued ones."""
    assert redact_macs(text) == shown


# Each spelling of six octets that normalize_mac or the log redactor reads.
SPELLINGS: dict[str, Callable[[bytes], str]] = {
    "colon": lambda b: b.hex(":"),
    "hyphen": lambda b: b.hex("-"),
    "colon, no leading zeros": lambda b: ":".join(f"{o:x}" for o in b),
    "hyphen, no leading zeros": lambda b: "-".join(f"{o:x}" for o in b),
    "cisco dotted": lambda b: b.hex(".", 2),
    "hyphenated quads": lambda b: b.hex("-", 2),
    "halves, hyphen": lambda b: b.hex("-", 3),
    "halves, colon": lambda b: b.hex(":", 3),
    "bare": lambda b: b.hex(),
}
# The vendor's octets (and any glued group) use the digits 0-7, the device's octets 8-f: any 8-f left in
# the output is a digit of the device part that should have been hidden. Random text holds none.
VENDOR = st.binary(min_size=3, max_size=3).map(lambda b: bytes(o & 0x77 for o in b))
DEVICE = st.lists(
    st.builds(lambda hi, lo: hi << 4 | lo, st.integers(8, 15), st.integers(8, 15)), min_size=3, max_size=3
).map(bytes)
TEXT = st.text(st.characters(exclude_characters="89abcdefABCDEF"), max_size=30)
# what a MAC sits next to: quotes, `key=`, an identifier's `_`, a realm, an SSID, Japanese text (none with 8-f)
LEFT = st.sampled_from([" ", "_", "=", '"', "'", "\t", "\n", ",", "(", "/", "「", "端末", "＝", "sn=", "ip "])
RIGHT = st.sampled_from(["", " ", "_", '"', "'", ",", ")", "/", "」", "が", "@isp.jp", "＠isp.jp", ":Kyoto", ";"])
DEVICE_DIGITS = set("89abcdefABCDEF")


@settings(max_examples=300)
@given(
    vendor=VENDOR,
    device=DEVICE,
    spelling=st.sampled_from(sorted(SPELLINGS)),
    upper=st.booleans(),
    before=TEXT,
    left=LEFT,
    right=RIGHT,
    after=TEXT,
)
def test_no_device_digit_of_any_spelling_survives_in_any_text(
    vendor: bytes, device: bytes, spelling: str, upper: bool, before: str, left: str, right: str, after: str
) -> None:
    mac = SPELLINGS[spelling](vendor + device)
    mac = mac.upper() if upper else mac
    out = redact_macs(before + left + mac + right + " " + after)
    assert not set(out) & DEVICE_DIGITS, out


GLUED_GROUP = st.sampled_from([1, 2, 4, 6, 8, 12]).flatmap(
    lambda n: st.text(st.sampled_from("01234567"), min_size=n, max_size=n)
)
GLUED_BY = st.sampled_from([":", "-", ".", " ", "_", "/", "=", ",", "@"])
UUID = re.compile(r"(?<![0-9A-F])[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}(?![0-9A-F])", re.I)


@settings(max_examples=500)
@given(
    vendor=VENDOR,
    device=DEVICE,
    spelling=st.sampled_from(sorted(SPELLINGS)),
    upper=st.booleans(),
    before=st.lists(st.tuples(GLUED_GROUP, GLUED_BY), max_size=2),
    after=st.lists(st.tuples(GLUED_BY, GLUED_GROUP), max_size=2),
    same_separator=st.booleans(),
)
def test_no_device_digit_survives_glued_hex_groups(
    vendor: bytes,
    device: bytes,
    spelling: str,
    upper: bool,
    before: list[tuple[str, str]],
    after: list[tuple[str, str]],
    same_separator: bool,
) -> None:
    mac = SPELLINGS[spelling](vendor + device)
    mac = mac.upper() if upper else mac
    own = next((c for c in mac if c in ":-."), "-")
    line = "".join(g + (own if same_separator else s) for g, s in before) + mac
    line += "".join((own if same_separator else s) + g for s, g in after)
    assume(not UUID.search(line))  # hyphenated quads between 8 and 12 digits are a UUID, kept by design
    out = redact_macs("port " + line + " up")
    assert not set(out) & DEVICE_DIGITS, out


PREFIX = st.lists(st.integers(0, 0x7777).map(lambda n: f"{n & 0x7777:x}"), min_size=1, max_size=4)


@given(
    vendor=VENDOR,
    device=DEVICE,
    prefix=PREFIX,
    compressed=st.booleans(),
    upper=st.booleans(),
    before=TEXT,
    right=st.sampled_from(["", " ", "%wlp0", "/64", "]:443", ",", ")"]),
)
def test_no_device_digit_survives_in_an_ipv6_address_made_from_the_mac(
    vendor: bytes, device: bytes, prefix: list[str], compressed: bool, upper: bool, before: str, right: str
) -> None:
    """SLAAC's interface id: the vendor's octets with the universal/local bit flipped, ff:fe, the device's."""
    iid = [(vendor[0] ^ 0x02) << 8 | vendor[1], vendor[2] << 8 | 0xFF, 0xFE00 | device[0], device[1] << 8 | device[2]]
    head = ":".join(prefix) + ("::" if compressed else ":0" * (4 - len(prefix)) + ":")
    address = head + ":".join(f"{h:x}" for h in iid)
    address = address.upper() if upper else address
    out = redact_macs(before + " [" + address + right + " up")
    # the interface id's ff:fe is the SLAAC marker, not the device's
    assert not set(re.sub("(?i)ff:fe", "", out)) & DEVICE_DIGITS, out
