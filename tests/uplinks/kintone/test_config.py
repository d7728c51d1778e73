"""The kintone section: the shipped example loads as a whole gateway config, and mistakes are refused offline."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway import registry
from gateway.config import load_config
from gateway.uplinks.kintone import KintoneConfig, KintoneUplink
from tests.support.entry_points import declared_entry_points
from tests.uplinks.kintone.conftest import EXAMPLE, visits_section


def test_the_declared_entry_point_is_the_uplink() -> None:
    [ep] = [ep for ep in declared_entry_points(registry.UPLINK_GROUP) if ep.name == "kintone"]
    assert ep.load() is KintoneUplink


def test_the_example_config_loads_with_the_kintone_uplink(monkeypatch: pytest.MonkeyPatch) -> None:
    # the editable install's metadata predates the entry point: use this checkout's pyproject.toml
    declared = {ep.name: ep for ep in declared_entry_points(registry.UPLINK_GROUP)}
    real = registry.load

    def load(group: str, name: str) -> Any:
        return declared[name].load() if group == registry.UPLINK_GROUP else real(group, name)

    monkeypatch.setattr(registry, "load", load)
    cfg = load_config(EXAMPLE)
    [kintone] = [u for u in cfg.uplinks if u.type == "kintone"]
    assert isinstance(kintone, KintoneConfig)
    assert (kintone.app, kintone.daily_request_limit, kintone.batch_max_rows) == (42, 2000, 100)
    assert [m.match for m in kintone.mappings] == [
        {"direction": "up"},
        {"direction": "down"},
        {"subCategory": "gatewayAlarm", "alarmState": "active"},
        {"subCategory": "gatewayAlarm", "alarmState": "cleared"},
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"api_token": "abc123"}, "must reference a secret"),
        ({"api_token": [], "user": "gw"}, "password authentication needs both user and password"),
        ({"api_token": []}, "must authenticate, got neither api_token nor user/password"),
        ({"url": "https://example.cybozu.com/k/v1"}, "must be the domain only (the uplink adds /k/v1/...)"),
        ({"app": 0}, "greater than or equal to 1"),
    ],
)
def test_mistakes_are_refused_without_the_network(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        KintoneConfig.model_validate(visits_section("https://example.cybozu.com") | change)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"mode": "upsert"}, 'mode = "upsert" needs key_field'),
        ({"mode": "add", "key_field": "k"}, 'key_field is used with mode = "upsert" only'),
        (
            {"mode": "upsert", "key_field": "visit_id", "fields": {"visit_id": "$entity_id"}},
            "must not set the key field",
        ),
        ({"fields": {"bad code": "n"}}, "must be a kintone field code"),
        ({"fields": {"n": "$seq"}}, "must be an attribute name or one of $entity_id, $entity_type, $observed_at"),
        ({"key": "fixed"}, "must hold at least one {attribute} placeholder"),
    ],
)
def test_mapping_mistakes_are_refused_without_the_network(mapping: dict[str, Any], message: str) -> None:
    section = visits_section("https://example.cybozu.com")
    section["mappings"] = [section["mappings"][0] | mapping]
    with pytest.raises(ValidationError) as caught:
        KintoneConfig.model_validate(section)
    assert message in str(caught.value)
