"""The `[[adapters]] type = "http_poll"` section: URL, headers, TLS, cadence and document → Reading mappings."""

from __future__ import annotations

import codecs
import re
from typing import Annotated, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, field_validator, model_validator

from adapters.jsonmap.config import MappingSection, at_least_one
from adapters.jsonmap.paths import parse_path
from adapters.jsonmap.templates import FieldRef, check_literals, field_ref
from adapters.jsonmap.templates import parse_template as parse_placeholders
from gateway.adapter_api import AdapterConfig
from gateway.configbase import ConfigProblems, Field, HttpUrl
from gateway.ngsi.identifiers import check_entity_type
from gateway.secrets import check_ref_or_text, is_ref
from gateway.tls import TlsSection
from gateway.uplinks.http.oauth2 import cleartext_hosts, cleartext_warnings

# --- items path and templates ------------------------------------------------------------------------
# Parsed here (config validation) and used by mapping.py, so both agree on one grammar: the JSON path and
# template grammar every JSON-mapping adapter shares (adapters.jsonmap). Keys may be Japanese (`水位`).

ROOT = "$"  # `items = "$"`: the document itself is the list of items
FIELD_HELP = "placeholders are {<path of an item field>}"
TemplatePart = str | FieldRef


def _placeholder(inner: str) -> FieldRef:
    try:
        return field_ref(inner)
    except ValueError:
        raise ValueError(
            f"has an invalid placeholder {{{inner}}}; placeholders are item field paths like "
            "{stationCode} or {観測所.番号}"
        ) from None


def parse_template(text: str) -> tuple[TemplatePart, ...]:
    """Split `urn:ngsi-ld:WaterObserved:{stationCode}` into literal text and item field references."""
    return parse_placeholders(text, _placeholder, FIELD_HELP)


def _check_items(v: str | None) -> str | None:
    if v is not None and v != ROOT:
        parse_path(v, may_start_with_index=True)
    return v


def _check_entity_id_template(v: str) -> str:
    parts = parse_template(v)
    if not any(isinstance(p, FieldRef) for p in parts):
        raise ValueError("must contain at least one {field} placeholder, or every item gets the same entity id")
    check_literals(parts)
    return v


# --- choices ---------------------------------------------------------------------------------------------


# --- validators ------------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", re.ASCII)
# The adapter owns these: conditional GET and the body framing.
_MANAGED_HEADERS = frozenset({"if-none-match", "if-modified-since", "host", "content-length", "transfer-encoding"})


def _check_encoding(v: str | None) -> str | None:
    if v is not None:
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError("must be a text encoding Python knows, like utf-8, cp932 or euc_jp") from None
    return v


# --- sections --------------------------------------------------------------------------------------------


class ItemMapping(MappingSection):
    """One list of items (or the document as one item) and how each becomes a Reading."""

    attributes_table: ClassVar[str] = "[[adapters.mappings.attributes]]"

    items: Annotated[str | None, AfterValidator(_check_items)] = Field(
        default=None, description='path of the list of items; "$" if the document is the list; unset: one item'
    )
    entity_id: Annotated[str, AfterValidator(_check_entity_id_template)] = Field(
        description="template, e.g. urn:ngsi-ld:WaterObserved:{stationCode}"
    )
    entity_type: str

    @field_validator("entity_type")
    @classmethod
    def _entity_type(cls, v: str) -> str:
        return check_entity_type(v)


class HttpPollConfig(AdapterConfig):
    type: Literal["http_poll"]
    url: HttpUrl  # credentials in it (user:password@, ?apikey=) are refused there
    headers: dict[str, str] = Field(default_factory=dict, description='values may be "secret:<name>" / "env:<VAR>"')
    params: dict[str, str] = Field(default_factory=dict, description="query parameters; values may be secret refs")
    interval_s: float = Field(default=60.0, ge=0.05, le=86_400)
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    # each list of items is read up to this many: mapping them is the poll's work, on a small box
    max_items: int = Field(default=100_000, ge=1, le=1_000_000, description="items read per list; the rest are not")
    encoding: Annotated[str | None, AfterValidator(_check_encoding)] = Field(
        default=None, description="unset: the charset of the Content-Type, else UTF-8"
    )
    tls: TlsSection | None = None
    # Credentials over plain http to another host than this box: for a closed network, at the admin's risk; true
    # silences the warning (config_warnings).
    allow_insecure_http: bool = False
    mappings: Annotated[tuple[ItemMapping, ...], at_least_one("[[adapters.mappings]]")]

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not _TOKEN_RE.match(name):
                raise ValueError(f"header name {name!r} must be an HTTP token (letters, digits, - and !#$%&'*+.^_`|~)")
            if name.lower() in _MANAGED_HEADERS:
                raise ValueError(f"header {name!r} is set by the adapter itself; remove it")
            check_ref_or_text("header", name, value)
        return v

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            check_ref_or_text("parameter", name, value)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> HttpPollConfig:
        problems: list[tuple[str, str]] = []
        if self.timeout_s > self.interval_s:
            problems.append(
                (
                    "timeout_s",
                    (
                        f"must be at most interval_s so a poll ends before the next is due, "
                        f"got {self.timeout_s} > {self.interval_s}"
                    ),
                )
            )
        if self.tls is not None and not self.url.startswith("https://"):
            problems.append(("tls", "[adapters.tls] applies to https:// URLs only; remove it or use https"))
        if problems:
            raise ConfigProblems(problems)
        return self

    def _credentials(self) -> list[str]:
        """The keys whose credentials go with every poll (never their values): a header or parameter in clear
        whose name says credential is refused by its validator, so the references are the credentials."""
        sent = [f"header {name!r}" for name, value in self.headers.items() if is_ref(value)]
        sent.extend(f"parameter {name!r}" for name, value in self.params.items() if is_ref(value))
        return sent

    def cleartext_hosts(self) -> list[str]:
        """The host off this box that credentials go to over plain http."""
        return cleartext_hosts(self.url, self._credentials())

    def config_warnings(self) -> list[tuple[str, str]]:
        """(key, advice) for credentials that go over plain http off this box, unless allow_insecure_http = true.
        Warnings, not errors: such a config was valid before, and a box upgraded with one must keep reading and
        buffering (gateway.config.config_warnings). Open data over http:// is not warned of."""
        return [] if self.allow_insecure_http else cleartext_warnings(self.url, self._credentials())

    @property
    def display_url(self) -> str:
        """The URL without its query, for logs (a query may hold keys the technician did not move out)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"
