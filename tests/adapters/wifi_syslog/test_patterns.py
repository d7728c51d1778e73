"""Vendor patterns as data: hostapd, OpenWrt-forwarded hostapd and UniFi lines into association events."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from adapters.wifi_syslog import AssociationKind, WifiEvent, WifiEventError, decode_wifi_event, load_patterns
from gateway.errors import ConfigError

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2026, 9, 9, 11, 0, tzinfo=UTC)
PATTERNS = load_patterns()


def event(line: str) -> WifiEvent | None:
    return decode_wifi_event(line, now=NOW, patterns=PATTERNS)


@pytest.mark.parametrize(
    ("line", "kind", "mac", "host", "interface", "params"),
    [
        # hostapd's own syslog line, relayed by a full syslogd (with HOSTNAME)
        (
            "<30>Sep  9 20:08:12 ap-lib hostapd: wlan0: AP-STA-CONNECTED 68:5E:1C:5F:78:DD",
            AssociationKind.CONNECTED,
            "68:5e:1c:5f:78:dd",
            "ap-lib",
            "wlan0",
            (),
        ),
        # newer hostapd suffixes (src/ap/sta_info.c)
        (
            "<30>Sep  9 20:08:12 ap-lib hostapd: wlan0: AP-STA-CONNECTED 68:5e:1c:5f:78:dd auth_alg=sae keyid=guest vlan_id=20",
            AssociationKind.CONNECTED,
            "68:5e:1c:5f:78:dd",
            "ap-lib",
            "wlan0",
            (("auth_alg", "sae"), ("keyid", "guest"), ("vlan_id", "20")),
        ),
        (
            "<30>Sep  9 20:09:00 ap-lib hostapd: wlan0: AP-STA-DISCONNECTED 68:5e:1c:5f:78:dd",
            AssociationKind.DISCONNECTED,
            "68:5e:1c:5f:78:dd",
            "ap-lib",
            "wlan0",
            (),
        ),
        # OpenWrt logd remote format: `<PRI>TIMESTAMP HOSTNAME TAG: MSG`
        (
            "<30>Sep  9 20:08:12 OpenWrt hostapd: phy0-ap0: AP-STA-CONNECTED 00:11:22:33:44:55 auth_alg=open",
            AssociationKind.CONNECTED,
            "00:11:22:33:44:55",
            "OpenWrt",
            "phy0-ap0",
            (("auth_alg", "open"),),
        ),
        # OpenWrt with system.log_prefix set: the prefix becomes the TAG
        (
            "<30>Sep  9 20:08:12 OpenWrt branch-lib: hostapd: wlan1-1: AP-STA-DISCONNECTED 00:11:22:33:44:55",
            AssociationKind.DISCONNECTED,
            "00:11:22:33:44:55",
            "OpenWrt",
            "wlan1-1",
            (),
        ),
        # BusyBox syslogd remote logging: no HOSTNAME, TAG with PID
        (
            "<30>Sep  9 20:08:12 hostapd[1650]: wlan0: AP-STA-CONNECTED 00:11:22:33:44:55",
            AssociationKind.CONNECTED,
            "00:11:22:33:44:55",
            None,
            "wlan0",
            (),
        ),
        # RFC 5424 from rsyslog/logger
        (
            "<30>1 2026-09-09T20:08:12+09:00 ap-lib hostapd 1650 - - wlan0: AP-STA-CONNECTED 00:11:22:33:44:55",
            AssociationKind.CONNECTED,
            "00:11:22:33:44:55",
            "ap-lib",
            "wlan0",
            (),
        ),
    ],
)
def test_hostapd_lines(
    line: str, kind: AssociationKind, mac: str, host: str | None, interface: str, params: tuple[tuple[str, str], ...]
) -> None:
    e = event(line)
    assert e is not None
    assert (e.kind, e.client_mac.value, e.hostname, e.interface, e.params) == (kind, mac, host, interface, params)
    assert e.time == datetime(
        2026,
        9,
        9,
        20,
        8 if kind is AssociationKind.CONNECTED or "20:08" in line else 9,
        12 if "20:08" in line else 0,
        tzinfo=TOKYO,
    )
    assert (e.vendor, e.pattern, e.ap_mac, e.ssid) == ("hostapd", "ap-sta-event", None, None)
    assert e.ap == f"{host or '-'}/{interface}"


# Real stahtd lines quoted in public UniFi log parsers (MACs there were anonymised already).
UNIFI_TAG = "<30>Sep  9 20:08:12 U7-Pro 1c6a1b60c3c0,U7-Pro-8.0.26+15443: "
UNIFI_ASSOC = 'stahtd: stahtd[6930]: [STA-TRACKER].stahtd_dump_event(): {"op":"event","message_type":"STA_ASSOC_TRACKER","event_type":"association","mac":"68:5e:1c:5f:78:dd","vap":"wifi0ap6","assoc_status":"0","event_id": "1","assoc_delta": "10000","auth_utc": "1789002492.186321","auth_algo": "open","auth_rssi": "-61"}'
UNIFI_LEAVE = 'stahtd: stahtd[6930]: [STA-TRACKER].stahtd_dump_event(): {"op":"event","message_type":"STA_ASSOC_TRACKER","event_type":"sta_leave","mac":"68:5e:1c:5f:78:dd","vap":"wifi0ap6","assoc_status":"0","event_id": "2","sta_dc_reason": "sta left","deauth_reason": "1","avg_rssi": "-66"}'
UNIFI_DENY = 'stahtd[5335]: [STA-TRACKER].stahtd_dump_event(): {"op":"event","message_type":"STA_ASSOC_TRACKER","event_type":"deny","mac":"00:11:22:33:44:55","vap":"wifi0ap3","assoc_status":"4096"} - lock2ap, flags: 0x1000'


def test_unifi_association_and_leave() -> None:
    joined = event(UNIFI_TAG + UNIFI_ASSOC)
    left = event(UNIFI_TAG + UNIFI_LEAVE)
    assert joined is not None and left is not None
    assert (joined.kind, left.kind) == (AssociationKind.CONNECTED, AssociationKind.DISCONNECTED)
    assert joined.client_mac.value == "68:5e:1c:5f:78:dd"
    assert joined.ap_mac is not None and joined.ap_mac.value == "1c:6a:1b:60:c3:c0"
    assert joined.ap == "1c:6a:1b:60:c3:c0"
    assert (joined.interface, joined.hostname, joined.vendor) == ("wifi0ap6", "U7-Pro", "unifi")


def test_unifi_other_phases_and_local_format_are_not_association_events() -> None:
    assert event(UNIFI_TAG + UNIFI_DENY) is None  # recognised, but a refusal is no association
    # forwarded without the `<mac>,<model>` tag: no AP MAC, still an event
    e = event("<30>Sep  9 20:08:12 U7-Pro " + UNIFI_ASSOC)
    assert e is not None and e.ap_mac is None and e.ap == "U7-Pro/wifi0ap6"
    assert event("<30>Sep  9 20:08:12 ap kernel: eth0 link up") is None
    assert (
        event(
            '<30>Sep  9 20:08:12 ap stahtd: x stahtd_dump_event(): {"message_type":"OTHER","event_type":"association","mac":"00:11:22:33:44:55"}'
        )
        is None
    )


def test_time_falls_back_to_arrival_without_timestamp() -> None:
    e = event("<30>1 - ap hostapd - - - wlan0: AP-STA-CONNECTED 00:11:22:33:44:55")
    assert e is not None and e.time == NOW


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            UNIFI_TAG + 'stahtd_dump_event(): {"message_type":"STA_ASSOC_TRACKER","mac":"aa:bb:cc:dd:ee:ff",}',
            'wifi syslog pattern unifi.sta-assoc-tracker: json_group does not hold a JSON object, got "{\\"message_type\\":\\"STA_ASSOC_TRACKER\\",\\"mac\\":\\"aa:bb:cc:**:**:**..."; the firmware changed its format; update patterns.toml',
        ),
        (
            UNIFI_TAG
            + 'stahtd_dump_event(): {"message_type":"STA_ASSOC_TRACKER","event_type":"association","mac":"aa:bb:cc:dd:ee"}',
            'wifi syslog pattern unifi.sta-assoc-tracker client_mac: not a MAC address, got "aa:b***" (14 chars); expected AA:BB:CC:DD:EE:FF, AA-BB-CC-DD-EE-FF, aabb.ccdd.eeff or aabbccddeeff',
        ),
        (
            UNIFI_TAG + 'stahtd_dump_event(): {"message_type":"STA_ASSOC_TRACKER","event_type":"association"}',
            "wifi syslog pattern unifi.sta-assoc-tracker: field 'mac' (client_mac) is missing, got none",
        ),
        (
            UNIFI_TAG + 'stahtd_dump_event(): {"message_type":"STA_ASSOC_TRACKER","event_type":"association","mac":5}',
            'wifi syslog pattern unifi.sta-assoc-tracker client_mac: not a MAC address, got "***" (1 chars); expected AA:BB:CC:DD:EE:FF, AA-BB-CC-DD-EE-FF, aabb.ccdd.eeff or aabbccddeeff',
        ),
    ],
)
def test_unusable_matches_are_typed_errors(line: str, message: str) -> None:
    with pytest.raises(WifiEventError) as err:
        event(line)
    assert str(err.value) == message
    assert err.value.code == "wifi_event_invalid"


def test_invalid_ap_mac_is_a_typed_error() -> None:
    toml = """
[vendors.x]
source = "test"
[[vendors.x.patterns]]
name = "p"
regex = 'JOIN (?P<mac>\\S+) at (?P<ap>\\S+)'
kinds = { JOIN = "connected" }
fields = { client_mac = "mac", kind = "k", ap_mac = "ap" }
"""
    patterns = load_patterns(toml.replace("regex = 'JOIN", "regex = '(?P<k>JOIN)"))
    e = decode_wifi_event("<13>x: JOIN 00-11-22-33-44-55 at 0011.2233.4466", now=NOW, patterns=patterns)
    assert e is not None and e.ap_mac is not None and e.ap_mac.value == "00:11:22:33:44:66"
    with pytest.raises(WifiEventError) as err:
        decode_wifi_event("<13>x: JOIN 00-11-22-33-44-55 at nowhere", now=NOW, patterns=patterns)
    assert str(err.value).startswith('wifi syslog pattern x.p ap_mac: not a MAC address, got "no***" (7 chars)')


def test_a_new_vendor_is_data_only() -> None:
    yamaha = """
[vendors.yamaha_wlx]
description = "example vendor added without code"
source = "test fixture"
[[vendors.yamaha_wlx.patterns]]
name = "sta"
contains = "STA"
regex = '\\[(?P<ssid>[^\\]]+)\\] STA (?P<what>connected|disconnected): (?P<mac>[0-9a-f.]+)'
kinds = { connected = "connected", disconnected = "disconnected" }
fields = { client_mac = "mac", kind = "what", ssid = "ssid" }
"""
    patterns = load_patterns(yamaha)
    assert patterns.vendors == ("yamaha_wlx",)
    e = decode_wifi_event(
        "<13>Sep  9 20:08:12 wlx [Kobe_Free] STA connected: 0011.2233.4455", now=NOW, patterns=patterns
    )
    assert e is not None and (e.kind, e.ssid, e.client_mac.value) == (
        AssociationKind.CONNECTED,
        "Kobe_Free",
        "00:11:22:33:44:55",
    )
    assert decode_wifi_event("<13>Sep  9 20:08:12 wlx [Kobe_Free] roam", now=NOW, patterns=patterns) is None


BASE = """
[vendors.v]
source = "s"
[[vendors.v.patterns]]
name = "p"
regex = '{regex}'
kinds = {kinds}
fields = {fields}
{extra}
"""


@pytest.mark.parametrize(
    ("regex", "kinds", "fields", "extra", "lines"),
    [
        (
            "(?P<m>x",
            '{ a = "connected" }',
            '{ client_mac = "m", kind = "m" }',
            "",
            ['v.p.regex: invalid regular expression (missing ), unterminated subpattern at position 0), got "(?P<m>x"'],
        ),
        (
            "(?P<m>x)",
            '{ a = "joined" }',
            '{ client_mac = "m", kind = "m" }',
            "",
            ["v.p.kinds.a: input should be 'connected' or 'disconnected', got \"joined\""],
        ),
        (
            "(?P<m>x)",
            "{}",
            '{ client_mac = "m", kind = "m" }',
            "",
            ["vendors.v.patterns[0].kinds: dictionary should have at least 1 item after validation, not 0"],
        ),
        (
            "(?P<m>x)",
            '{ a = "connected" }',
            '{ client_mac = "mac", kind = "m" }',
            "",
            ["vendors.v.patterns[0]: fields.client_mac 'mac' is not a named group of regex and no json_group is set"],
        ),
        (
            "(?P<m>x)",
            '{ a = "connected" }',
            '{ client_mac = "m", kind = "m" }',
            'json_group = "j"',
            ["vendors.v.patterns[0]: json_group 'j' is not a named group of regex (groups: ['m'])"],
        ),
        (
            "(?P<m>x)",
            '{ a = "connected" }',
            '{ client_mac = "m", kind = "m", vendor = "x" }',
            'colour = "red"',
            ["vendors.v.patterns[0].fields.vendor: unknown key", "vendors.v.patterns[0].colour: unknown key"],
        ),
    ],
)
def test_loader_errors_name_the_key_path(regex: str, kinds: str, fields: str, extra: str, lines: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_patterns(BASE.format(regex=regex, kinds=kinds, fields=fields, extra=extra), source="custom.toml")
    got = [
        line.replace("vendors.v.patterns[0].regex", "v.p.regex").replace("vendors.v.patterns[0].kinds.a", "v.p.kinds.a")
        for line in err.value.errors
    ]
    assert got == lines
    assert err.value.source == "custom.toml"


def test_loader_rejects_bad_toml_and_empty_files() -> None:
    with pytest.raises(ConfigError) as err:
        load_patterns("[vendors", source="p.toml")
    assert str(err.value).startswith("p.toml: not valid TOML: ")
    with pytest.raises(ConfigError) as err:  # what tomllib lets out besides its own error
        load_patterns("x = " + "9" * 5000, source="p.toml")
    assert str(err.value).startswith("p.toml: not valid TOML: an integer may have at most 4300 digits")
    with pytest.raises(ConfigError) as err:
        load_patterns("", source="p.toml")
    assert err.value.errors == ["vendors: required key is missing"]


def test_event_repr_masks_macs() -> None:
    e = event(UNIFI_TAG + UNIFI_ASSOC)
    assert e is not None
    assert "5f:78:dd" not in repr(e) and "60:c3:c0" not in repr(e)
    assert "client_mac=MacAddress('68:5e:1c:**:**:**')" in repr(e)


def test_required_field_mismatch_skips_the_pattern() -> None:
    line = UNIFI_TAG + UNIFI_ASSOC.replace('"STA_ASSOC_TRACKER"', '"STA_ASSOC_TRACKER_V2"')
    assert "STA_ASSOC_TRACKER" in line  # passes the `contains` pre-filter ...
    assert event(line) is None  # ... but `require` holds message_type to the exact value
