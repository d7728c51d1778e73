"""The `orion` uplink: Readings → NGSI v2 `POST /v2/op/update` (append), on the shared HTTP batch engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator

from gateway.ngsi import identifiers, ld, v2
from gateway.records import Reading
from gateway.uplinks.api import UplinkConfig
from gateway.uplinks.http.batch import (
    CatchUp,
    HttpBatchUplink,
    HttpUplinkConfig,
    Service,
)

__all__ = ["CatchUp", "OrionConfig", "OrionUplink"]

ServicePath = Annotated[str, AfterValidator(identifiers.check_service_path)]


class OrionConfig(HttpUplinkConfig):
    """`[[uplinks]] type = "orion"`: an Orion Context Broker (NGSI v2), possibly behind an API gateway."""

    service: Service | None = None  # Fiware-Service (tenant); omitted: Orion's default tenant
    service_path: ServicePath = "/"


class OrionUplink(HttpBatchUplink):
    """Delivers Readings to Orion as NGSI v2 entities, batched with `POST /v2/op/update` (append)."""

    config_model: ClassVar[type[UplinkConfig]] = OrionConfig
    path = "/v2/op/update"
    api_root = "/v2"
    broker = "Orion"
    success = (204,)  # Orion's manual: "Successful operation uses 204 No Content"

    def _entity(self, reading: Reading) -> dict[str, Any]:
        return v2.to_v2_entity(reading, encoding=self.config.value_encoding, drops=self._drops)

    def _metadata_drops(self) -> ld.MetadataDrops:
        # the unitCode metadata a unit overrides, said as the converter says it but counted for this uplink
        return ld.MetadataDrops(self.name, entity="NGSI v2", logger=v2.log)

    def _body(self, entities: Sequence[bytes]) -> bytes:
        return v2.v2_update_body(entities)

    def _fixed_headers(self) -> dict[str, str]:
        cfg = self.config
        assert isinstance(cfg, OrionConfig)
        headers = {"Content-Type": "application/json", "Fiware-ServicePath": cfg.service_path}
        if cfg.service is not None:
            headers["Fiware-Service"] = cfg.service
        return headers
