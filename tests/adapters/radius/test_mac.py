"""MAC spellings from NASes and APs normalise to one form; masks never leak the device part."""

from __future__ import annotations

import pytest

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
