"""`[[uplinks]] type = "kintone"`: the app, the credentials and the mapping from readings to records; no I/O.

Everything here is checked without the network (`edgegw check-config` on a laptop). What needs the
app's form (field codes, field types, the unique key, drop-down choices) is checked at start
against `GET /k/v1/app/form/fields.json` by `form.py`.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, field_validator, model_validator

from gateway.configbase import Field, HttpUrl, Section
from gateway.secrets import SecretRef
from gateway.tls import TlsSection
from gateway.uplinks.api import UplinkConfig
from gateway.uplinks.http.oauth2 import cleartext_hosts, cleartext_warnings

# kintone's documented limit for one request that adds or updates records (records.json).
KINTONE_MAX_RECORDS = 100
# The standard course allows 10,000 requests a day per app; the wide course 100,000.
STANDARD_DAILY_LIMIT = 10_000

# Sources a field may take besides an attribute name: what every reading has.
PSEUDO_SOURCES = frozenset({"$entity_id", "$entity_type", "$observed_at"})
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
# kintone field codes: no spaces or symbols but _ ・ ＄ ￥ and the full-width ones; 1-128 characters
_FIELD_CODE = re.compile(r"^[^\s!\"#$%&'()*+,\-./:;<=>?@\[\\\]^`{|}~]{1,128}$")


class Mode(enum.Enum):
    ADD = "add"  # every reading a new record (visits, pickups, alarms as tickets)
    UPSERT = "upsert"  # one record per key, updated in place (the latest state of an entity)


class DailyLimitPolicy(enum.Enum):
    # kintone does not refuse requests past the daily limit: it mails the store administrator, and
    # may contact the customer. So the gateway holds back itself until the counter resets at 09:00 JST.
    HOLD = "hold"
    WARN = "warn"  # send anyway; WARNING once a day (a municipality that bought more)


def _check_code(code: str) -> str:
    if not _FIELD_CODE.match(code):
        raise ValueError(f"must be a kintone field code (no spaces or ASCII symbols but _), got {code!r}")
    return code


FieldCode = Annotated[str, AfterValidator(_check_code)]


class Constant(Section):
    """`{ value = "対応中" }`: the same value in every record (a status the mapping sets)."""

    value: str | int | float | bool | list[str]


def _source(v: Any) -> Any:
    if isinstance(v, str) and v.startswith("$") and v not in PSEUDO_SOURCES:
        raise ValueError(f"must be an attribute name or one of {', '.join(sorted(PSEUDO_SOURCES))}, got {v!r}")
    if isinstance(v, str) and not v:
        raise ValueError("must name an attribute, got an empty string")
    return v


FieldSource = Annotated[str | Constant, BeforeValidator(_source)]


class RecordMapping(Section):
    """One `[[uplinks.mappings]]` entry: which readings, how they become records, and the fields."""

    entity_types: list[str] = Field(min_length=1, description="entity types this mapping takes")
    # Attribute values a reading must have to take this mapping (e.g. direction = "up"): an alert's
    # raise and its clear update different fields of the same record.
    match: dict[str, str | int | float | bool] = Field(default_factory=dict)
    mode: Mode
    key_field: FieldCode | None = Field(default=None, description="upsert: the unique field (重複禁止) that is the key")
    key: str = Field(default="{$entity_id}", description="upsert: the key's value, {attribute} placeholders")
    fields: dict[FieldCode, FieldSource] = Field(min_length=1, description="field code → attribute, $pseudo or {value}")

    @field_validator("key")
    @classmethod
    def _key_placeholders(cls, v: str) -> str:
        names = _PLACEHOLDER.findall(v)
        if not names:
            raise ValueError(f"must hold at least one {{attribute}} placeholder, got {v!r}")
        for name in names:
            if name.startswith("$") and name not in PSEUDO_SOURCES:
                raise ValueError(f"placeholder {{{name}}} is not one of {', '.join(sorted(PSEUDO_SOURCES))}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> RecordMapping:
        if self.mode is Mode.UPSERT and self.key_field is None:
            raise ValueError(
                'mode = "upsert" needs key_field, the field code of a unique (重複禁止) text or number field'
            )
        if self.mode is Mode.ADD and self.key_field is not None:
            raise ValueError('key_field is used with mode = "upsert" only, got it with mode = "add"; remove it')
        if self.key_field is not None and self.key_field in self.fields:
            raise ValueError(
                f"fields must not set the key field {self.key_field!r}: its value comes from key; remove it from fields"
            )
        return self

    def key_names(self) -> list[str]:
        return _PLACEHOLDER.findall(self.key)


class BasicAuth(Section):
    """Basic authentication in front of kintone (an option of cybozu.com's access control)."""

    user: str = Field(min_length=1)
    password: SecretRef


def _tokens(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


class KintoneConfig(UplinkConfig):
    """`[[uplinks]] type = "kintone"`: one kintone app, records from readings."""

    # https://<subdomain>.cybozu.com, or <subdomain>.s.cybozu.com for secure access (client certificate)
    url: HttpUrl
    app: int = Field(ge=1, description="the app id (the number in /k/<id>/)")
    guest_space_id: int | None = Field(default=None, ge=1, description="for an app in a guest space")
    # Several tokens are sent comma-joined (kintone wants those of the apps a lookup reads too).
    api_token: Annotated[list[SecretRef], BeforeValidator(_tokens)] = Field(default_factory=list)
    user: str | None = Field(default=None, min_length=1, description="password authentication instead of a token")
    password: SecretRef | None = None
    basic_auth: BasicAuth | None = None
    tls: TlsSection = TlsSection()
    timeout_s: float = Field(default=30.0, gt=0, le=300)
    daily_request_limit: int = Field(
        default=STANDARD_DAILY_LIMIT, ge=1, le=10_000_000, description="this gateway's share of the app's daily limit"
    )
    on_daily_limit: DailyLimitPolicy = DailyLimitPolicy.HOLD
    mappings: list[RecordMapping] = Field(min_length=1)
    # Credentials over plain http to another host than this box: for a closed network, at the admin's risk; true
    # silences the warning (config_warnings).
    allow_insecure_http: bool = False

    @field_validator("url")
    @classmethod
    def _no_path(cls, v: str) -> str:
        if re.match(r"^https?://[^/]+/.+", v):
            raise ValueError(
                f"must be the domain only (the uplink adds /k/v1/...), got {v!r}; e.g. https://example.cybozu.com"
            )
        return v.rstrip("/")

    @model_validator(mode="after")
    def _auth(self) -> KintoneConfig:
        if bool(self.user) != bool(self.password):
            raise ValueError("password authentication needs both user and password, got only one of them")
        if self.api_token and self.user:
            raise ValueError("must authenticate one way, got both api_token and user/password; keep one")
        if not self.api_token and not self.user:
            raise ValueError(
                'must authenticate, got neither api_token nor user/password; set api_token = "secret:<name>" '
                "(a token of the app with 'add records' and, for upsert, 'edit records' permission)"
            )
        if self.url.startswith("http://") and self.tls != TlsSection():
            raise ValueError("tls settings need an https:// url, got an http:// url; change url or drop [tls]")
        return self

    def _credentials(self) -> list[str]:
        """The keys whose credentials go with every request (never their values); one way always does."""
        sent = ["api_token"] if self.api_token else ["password"]
        if self.basic_auth is not None:
            sent.append("basic_auth.password")
        return sent

    def cleartext_hosts(self) -> list[str]:
        """The host off this box that credentials go to over plain http: kintone always authenticates."""
        return cleartext_hosts(self.url, self._credentials())

    def config_warnings(self) -> list[tuple[str, str]]:
        """(key, advice) for credentials that go over plain http off this box, unless allow_insecure_http = true.
        Warnings, not errors: such a config was valid before, and a box upgraded with one must keep reading and
        buffering (gateway.config.config_warnings)."""
        return [] if self.allow_insecure_http else cleartext_warnings(self.url, self._credentials())
