"""The [fleet] sample parses as documented; the ja and en alarm catalogs stay in step; config errors name the fix."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.fleet.alarms import AlarmEvent, Condition, EventKind, catalog, render_mail
from gateway.fleet.config import AlarmKind, Language, Severity

SAMPLE = Path(__file__).resolve().parents[2] / "gateway" / "fleet" / "sample.toml"


def parse(fleet: dict[str, object], tmp_path: Path) -> object:
    return parse_config(
        {
            "gateway": {"id": "g", "data_dir": str(tmp_path)},
            "adapters": [],
            "uplinks": [{"name": "orion", "type": "orion", "url": "http://127.0.0.1:1026"}],
            "fleet": fleet,
        }
    )


def test_the_sample_parses(tmp_path: Path) -> None:
    doc = tomllib.loads(SAMPLE.read_text(encoding="utf-8"))
    config = parse(doc["fleet"], tmp_path)
    fleet = config.fleet  # type: ignore[attr-defined]
    assert [r.kind for r in fleet.alarms.rules] == list(AlarmKind)
    assert fleet.remote_config.health_window_s == 600


def test_catalogs_have_the_same_keys_and_placeholders() -> None:
    ja, en = catalog(Language.JA), catalog(Language.EN)
    assert ja.keys() == en.keys()
    for key in ja:
        assert set(re.findall(r"{(\w+)}", ja[key])) == set(re.findall(r"{(\w+)}", en[key])), key
    assert {f"title.{k.value}" for k in AlarmKind} <= ja.keys()


def test_every_kind_renders_in_both_languages() -> None:
    for kind in AlarmKind:
        cond = Condition(kind=kind, subject="orion", severity=Severity.WARNING, detail="d")
        for event_kind in EventKind:
            event = AlarmEvent(kind=event_kind, condition=cond, raised_at=1_782_831_600.0, at=1_782_835_200.0)
            for language in Language:
                subject, text = render_mail(event, gateway="gw-1", language=language)
                assert "{" not in subject + text
    event = AlarmEvent(
        kind=EventKind.CLEARED,
        condition=Condition(kind=AlarmKind.DISK_LOW, subject="", severity=Severity.CRITICAL, detail="disk: 4.0 % free"),
        raised_at=1_782_831_600.0,
        at=1_782_835_200.0,
    )
    assert render_mail(event, gateway="gw-1", language=Language.JA) == (
        "[復旧] gw-1: ディスクの空きが少なくなっています",
        "ゲートウェイ gw-1 の警報が解除されました。\n\ndisk: 4.0 % free\n\n発生時刻: 2026-07-01 00:00:00 JST\n"
        "解除時刻: 2026-07-01 01:00:00 JST\n警報ID: gw-1-disk_low\n",
    )


@pytest.mark.parametrize(
    ("fleet", "message"),
    [
        (
            {"remote_config": {"public_key": "AAAA"}},
            "fleet.remote_config.public_key: an Ed25519 public key is 32 bytes, got 3",
        ),
        (
            {
                "remote_config": {
                    "public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                    "url": "http://p.example/b",
                }
            },
            "url must be https, got 'http://p.example/b'; or set allow_http = true on a test bench",
        ),
        (
            {"alarms": {"recipients": {"critical": ["not-an-address"]}}},
            "recipients.critical[0]: not an e-mail address (local@domain), got a value not shown here",
        ),
    ],
)
def test_config_errors_say_what_and_how(fleet: dict[str, object], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse(fleet, tmp_path)
    assert message in "\n".join(info.value.errors)
