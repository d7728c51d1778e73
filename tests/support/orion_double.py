"""A strict HTTP double of Orion (NGSI v2 batch update and query) and an NGSI-LD broker (batch upsert), with faults.

A body over `max_body` is 413 before anything else, as in Orion's `connectionTreat()`
(src/lib/rest/rest.cpp); then `tests.support.orion_rules` answers for Orion's HTTP layer in the same
function's order (service paths, Content-Type, URI params, 411) and for the services (Orion's status codes
and error bodies). What passes is applied to an in-memory entity store the way Orion 4's mongoBackend
applies it, and every request is logged with its headers and body. A batch update
(`POST /v2/op/update`) is processed entity by entity in order, each looked up by id and type:
`append` creates or updates, `appendStrict` refuses attributes that exist, `update` and `delete` refuse
what does not exist, `replace` swaps every attribute; each failure adds to one error (the first sets
the status) and a batch where some succeeded and some did not ends in 422 `PartialUpdate`
(src/lib/mongoBackend/MongoCommonUpdate.cpp, mongoUpdateContext.cpp; functional tests
0000_update_error_responses/error_responses_09*, 1715_batch_update/*). Metadata an update leaves out
are kept; one location attribute per entity, across requests too (413).

What the double does not implement it refuses with 501 `NotImplemented` rather than guess: options
that change what is stored (`keyValues`, `overrideMetadata`), `idPattern` in a batch, two entities
of one id with different types in a service path, deleting a location attribute.

`OrionDouble(tolerate=...)` switches single strict rules off (`orion_rules.Tolerance`) for a sender
other than this gateway; Orion's own rules always apply.

Faults are scripted per test: answer a status for N requests or until a time, hang, refuse with a
body made from the request (`refuse_with`: what a proxy or platform in front of Orion answers;
successes only ever come from the rules), require an X-Auth-Token, or require a bearer token from the
double's own OAuth2 token endpoint (`POST /oauth2/token`, client credentials, one or more clients).
An HTTPS variant serves a certificate of a test CA generated into a temporary directory and can
require a client certificate (mTLS).

A path the double does not serve gets Orion's answer to it, whatever the method: 400 BadRequest
"Service not found. Check your URL as probably it is wrong." (`restService()` in Orion's
src/lib/rest/RestService.cpp; functional tests 0000_bad_requests, 1697_more_than_one_bad_input,
2527_crash_with_empty_uri_path) — not 404. A served path with another method gets Orion's 405.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import enum
import ipaddress
import re
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import orjson
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from multidict import CIMultiDict

from tests.support import orion_rules

V2_UPDATE = "/v2/op/update"
V2_ENTITIES = "/v2/entities"  # the IoT Agent library sends a single measure here with ?options=upsert
V2_QUERY = "/v2/op/query"  # the mqtt uplink's confirmation reads what an IoT Agent wrote
V2_REGISTRATIONS = "/v2/registrations"  # the IoT Agents register the commands of a device here
LD_UPSERT = "/ngsi-ld/v1/entityOperations/upsert"
TOKEN_PATH = "/oauth2/token"
MAX_BODY = 1_048_576  # Orion's default -inReqPayloadMaxSize


class ManualClock:
    """Time that only moves when a test says so; shared by the uplink and the double."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedRequest:
    method: str
    path: str
    query: str
    headers: CIMultiDict[str]
    body: bytes
    status: int
    response: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass(frozen=True, slots=True, kw_only=True)
class Arrival:
    """A request as `refuse_with`'s callback sees it, before anything else looked at it."""

    method: str
    path: str
    query: str
    headers: CIMultiDict[str]
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """A scripted refusal, sent as it is. Only refusals: a success must come from the rules."""

    status: int
    body: str | bytes
    content_type: str = "application/json"

    def __post_init__(self) -> None:
        if self.status < 400:
            raise ValueError(f"Refusal: a status of 400 or more, got {self.status}; successes come from the rules")


RefuseWith = Callable[[Arrival], Refusal | None]


@dataclass(slots=True, kw_only=True)
class _Fault:
    status: int
    remaining: int | None  # requests still to answer this way; None = until `until`
    skip: int  # requests to let through before the fault starts
    until: float | None
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsMaterial:
    """PEM files of a throw-away CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_bundle: Path  # client certificate and key in one PEM file


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def make_tls_material(directory: Path) -> TlsMaterial:
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(days=1), now + dt.timedelta(days=30)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgegw test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        cn: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName] | None
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server, server_key = leaf(
        "127.0.0.1",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    client, client_key = leaf("gateway-test-001", ExtendedKeyUsageOID.CLIENT_AUTH, None)
    pem = serialization.Encoding.PEM
    m = TlsMaterial(
        ca_file=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        client_bundle=directory / "client-bundle.pem",
    )
    m.ca_file.write_bytes(ca.public_bytes(pem))
    m.server_cert.write_bytes(server.public_bytes(pem))
    _write_key(m.server_key, server_key)
    m.client_cert.write_bytes(client.public_bytes(pem))
    _write_key(m.client_key, client_key)
    m.client_bundle.write_bytes(m.client_cert.read_bytes() + m.client_key.read_bytes())
    return m


def _append(current: dict[str, Any], entity: Mapping[str, Any]) -> None:
    """Write `entity`'s attributes into the stored `current` the way Orion's `append` does.

    An attribute's value and type are replaced; its metadata are merged: "existing metadata not
    included in the request are not touched in the attribute (i.e. they keep the previous value)"
    (Orion's manual, "Metadata update semantics"). Attributes the update leaves out are kept.
    """
    for name, attr in entity.items():
        if name in ("id", "type"):
            continue
        old = current.get(name)
        if isinstance(old, dict) and isinstance(attr, dict) and isinstance(old.get("metadata"), dict):
            merged = {**old["metadata"], **(attr.get("metadata") or {})}
            attr = {**attr, "metadata": merged}
        current[name] = attr


# Orion since 3.9 (libmicrohttpd 0.9.75) sends RFC 9110's reason phrases; Python 3.11's are the older ones
# ("Request Entity Too Large", "Unprocessable Entity"). A client must match on the status, never on these.
REASONS = {413: "Content Too Large", 422: "Unprocessable Content"}


def _json(
    status: int, doc: Any, headers: dict[str, str] | None = None, content_type: str = "application/json"
) -> web.Response:
    return web.Response(
        status=status, reason=REASONS.get(status), body=orjson.dumps(doc), content_type=content_type, headers=headers
    )


# Orion's bodies for a path it does not serve and for a method a path does not take, byte for byte
# (97 and 63 bytes of Content-Length in the functional tests)
SERVICE_NOT_FOUND = {"error": "BadRequest", "description": "Service not found. Check your URL as probably it is wrong."}
METHOD_NOT_ALLOWED = {"error": "MethodNotAllowed", "description": "method not allowed"}


@dataclass(slots=True)
class _OAuth:
    clients: dict[str, str]  # client id -> secret
    expires_in: float
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (clock time)


class _Coverage(enum.Enum):
    """How much of one entity of a batch was done (mongoBackend's UpdateCoverage)."""

    SUCCESS = "success"
    FULL_ATTRS_FAIL = "full-attrs-fail"  # none of the entity's attributes could be done
    ENTITY_NOT_FOUND = "entity-not-found"
    PARTIAL = "partial"


def _combine(total: _Coverage | None, entity: _Coverage) -> _Coverage:
    """The batch's coverage after one more entity (the switch in mongoUpdateContext.cpp)."""
    if total is None or total is entity:
        return entity
    if _Coverage.SUCCESS in (total, entity) or _Coverage.PARTIAL in (total, entity):
        return _Coverage.PARTIAL
    return _Coverage.FULL_ATTRS_FAIL  # full attrs fail and entity not found, in either order


@dataclass(slots=True)
class _OrionError:
    """The one error of a batch: the first failure sets status and error, later ones only add to the
    description (OrionError::fill overwrites all three, OrionError::fillOrAppend)."""

    status: int = 0
    error: str = ""
    description: str = ""

    def fill(self, status: int, error: str, description: str) -> None:
        self.status, self.error, self.description = status, error, description

    def fill_or_append(self, status: int, error: str, description: str, tail: str) -> None:
        if self.status:
            self.description += tail
        else:
            self.fill(status, error, description)


GEO_TYPES = frozenset({"geo:json", "geo:point", "geo:line", "geo:box", "geo:polygon"})
# the store's 413 for a second location appended later is the rules' for two in a new entity
GEOLOC_413 = orion_rules.GEOLOC_413


def _is_location(attr: Any, stored: Any) -> bool:
    """Whether `attr` of a request becomes its entity's location (ContextAttribute::getLocation): a geo
    type and a value, unless `ignoreType` says otherwise, in the request or else in the stored attribute."""
    if not isinstance(attr, dict) or attr.get("type") not in GEO_TYPES or attr.get("value") is None:
        return False
    metadata = attr.get("metadata") or {}
    if "ignoreType" in metadata:
        return metadata["ignoreType"].get("value") is not True
    old = (stored.get("metadata") or {}).get("ignoreType") if isinstance(stored, dict) else None
    return not (isinstance(old, dict) and old.get("value") is True)


def _attrs(entity: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entity.items() if k not in ("id", "type")}


class OrionDouble:
    """The double's server, state and fault script. Use `async with OrionDouble() as orion:`."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        tls: TlsMaterial | None = None,
        require_client_cert: bool = False,
        tolerate: Iterable[orion_rules.Tolerance] = (),
        max_body: int = MAX_BODY,
        keep_log: bool = True,
    ) -> None:
        self.clock = clock
        self.tls = tls
        self.require_client_cert = require_client_cert
        self.tolerate: orion_rules.Tolerances = frozenset(tolerate)
        self.max_body = max_body
        self.keep_log = keep_log
        self.requests: list[LoggedRequest] = []
        # (Fiware-Service, Fiware-ServicePath, entity id) -> latest entity, v2 normalized form
        self.entities: dict[tuple[str, str, str], dict[str, Any]] = {}
        # the same key -> the name of the entity's location attribute, for those that have one
        self._locations: dict[tuple[str, str, str], str] = {}
        # (NGSILD-Tenant, entity id) -> latest entity, LD form
        self.ld_entities: dict[tuple[str, str], dict[str, Any]] = {}
        # every entity created, appended to, updated or replaced, with what was applied of it, in arrival
        # order (v2 and LD); deletions are not writes
        self.written: list[dict[str, Any]] = []
        # (Fiware-Service, Fiware-ServicePath, registration id) -> registration as received
        self.registrations: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.token_fetches = 0
        self.update_count = 0
        self.url = ""
        self._faults: list[_Fault] = []
        self._hang_remaining = 0
        self._hang_until: float | None = None
        self._x_auth_token: str | None = None
        self._oauth: _OAuth | None = None
        self._ld_entity_faults: dict[str, tuple[int, str]] = {}
        self._ld_raw_errors: dict[str, Any] = {}
        self._ld_unreported: set[str] = set()
        self._refused_entities: dict[str, str] = {}
        self._refuse_with: RefuseWith | None = None
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # ---- fault script -------------------------------------------------------------------------

    def fail(
        self, status: int = 503, *, count: int = 1, until: float | None = None, after: int = 0, body: Any = None
    ) -> None:
        """Answer `status` to `count` NGSI requests (or to all until clock time `until`), after letting `after` through."""
        doc = body if body is not None else {"error": "ServiceUnavailable", "description": "scripted fault"}
        self._faults.append(
            _Fault(
                status=status,
                remaining=None if until is not None else count,
                until=until,
                skip=after,
                body=orjson.dumps(doc),
            )
        )

    def refuse_entity(self, entity_id: str, description: str = "Invalid characters in attribute value") -> None:
        """Refuse (400 BadRequest, whole request) any v2 update holding `entity_id`, as a stricter platform would."""
        self._refused_entities[entity_id] = description

    def refuse_with(self, answer: RefuseWith | None) -> None:
        """Show every request (NGSI and token) to `answer` before anything else: a `Refusal` is sent as it
        is, None lets the request on to the faults, the credentials and the rules. None stops it."""
        self._refuse_with = answer

    def hang(self, count: int = 1, *, until: float | None = None) -> None:
        """Never answer the next `count` NGSI requests (or all until clock time `until`)."""
        self._hang_remaining = 0 if until is not None else count
        self._hang_until = until

    def require_x_auth_token(self, token: str) -> None:
        self._x_auth_token = token

    def require_oauth(self, client_id: str, client_secret: str, *, expires_in: float = 60.0) -> None:
        """Require a token of the double's token endpoint; once per client (the last `expires_in` holds)."""
        if self._oauth is None:
            self._oauth = _OAuth({}, expires_in)
        self._oauth.clients[client_id] = client_secret
        self._oauth.expires_in = expires_in

    def revoke_tokens(self) -> None:
        """Forget every issued token, as an authorization server restart or key rotation does."""
        if self._oauth is not None:
            self._oauth.tokens.clear()

    def fail_ld_entity(self, entity_id: str, status: int, title: str) -> None:
        """Report `entity_id` as failed (with this status) in an upsert's 207 instead of writing it."""
        self._ld_entity_faults[entity_id] = (status, title)

    def ld_entity_error(self, entity_id: str, error: Any) -> None:
        """Answer `entity_id` in an upsert's 207 with `error` as given (any shape a broker sends), not writing it."""
        self._ld_raw_errors[entity_id] = error

    def leave_out_ld_entity(self, entity_id: str) -> None:
        """Neither write `entity_id` nor name it in the upsert's 207 (in neither `success` nor `errors`)."""
        self._ld_unreported.add(entity_id)

    def requests_to(self, path: str) -> list[LoggedRequest]:
        return [r for r in self.requests if r.path == path]

    @property
    def arrivals(self) -> list[str]:
        return [e["id"] for e in self.written]

    # ---- server -------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._unserved])
        app.router.add_post(V2_UPDATE, self._v2_update)
        app.router.add_post(V2_ENTITIES, self._v2_create)
        app.router.add_post(V2_QUERY, self._v2_query)
        app.router.add_post(V2_REGISTRATIONS, self._v2_register)
        app.router.add_post(LD_UPSERT, self._ld_upsert)
        app.router.add_post(TOKEN_PATH, self._token)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        ctx = None
        if self.tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(self.tls.server_cert), str(self.tls.server_key))
            if self.require_client_cert:
                ctx.load_verify_locations(cafile=str(self.tls.ca_file))
                ctx.verify_mode = ssl.CERT_REQUIRED
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"{'https' if ctx else 'http'}://127.0.0.1:{port}"

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> OrionDouble:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- handlers -----------------------------------------------------------------------------

    @web.middleware
    async def _unserved(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """What Orion answers for a path it does not serve, or a method a served path does not take."""
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPMethodNotAllowed as exc:
            allow = ", ".join(sorted(exc.allowed_methods))
            return self._log(request, await request.read(), _json(405, METHOD_NOT_ALLOWED, headers={"Allow": allow}))
        except web.HTTPNotFound:
            return self._log(request, await request.read(), _json(400, SERVICE_NOT_FOUND))

    def _log(self, request: web.Request, body: bytes, resp: web.Response) -> web.Response:
        if self.keep_log:
            payload = resp.body if isinstance(resp.body, bytes) else b""
            self.requests.append(
                LoggedRequest(
                    method=request.method,
                    path=request.path,
                    query=request.query_string,
                    headers=CIMultiDict(request.headers),
                    body=body,
                    status=resp.status,
                    response=payload,
                )
            )
        return resp

    def _scripted(self, request: web.Request, body: bytes) -> web.Response | None:
        if self._refuse_with is None:
            return None
        arrival = Arrival(
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers=CIMultiDict(request.headers),
            body=body,
        )
        refusal = self._refuse_with(arrival)
        if refusal is None:
            return None
        body_bytes = refusal.body.encode() if isinstance(refusal.body, str) else refusal.body
        return web.Response(status=refusal.status, body=body_bytes, content_type=refusal.content_type)

    async def _gate(self, request: web.Request, body: bytes) -> web.Response | None:
        """Scripted refusals and faults, then size and credentials; None lets the request through to the rules,
        so a request without a valid token never reaches Orion's own checks."""
        scripted = self._scripted(request, body)
        if scripted is not None:
            return scripted
        now = self.clock()
        if self._hang_remaining > 0 or (self._hang_until is not None and now < self._hang_until):
            self._hang_remaining = max(0, self._hang_remaining - 1)
            await self._release.wait()
            return web.Response(status=503)
        for fault in list(self._faults):
            if fault.until is not None and now >= fault.until:
                self._faults.remove(fault)
                continue
            if fault.skip > 0:
                fault.skip -= 1
                break
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
            return web.Response(status=fault.status, body=fault.body, content_type="application/json")
        if len(body) > self.max_body:
            return _json(
                413,
                {
                    "error": "RequestEntityTooLarge",
                    "description": f"payload size: {len(body)}, max size supported: {self.max_body}",
                },
            )
        if self._x_auth_token is not None and request.headers.get("X-Auth-Token") != self._x_auth_token:
            # What a Wilma PEP proxy in front of Orion answers.
            return web.Response(
                status=401,
                text="Auth-token not found in request header"
                if "X-Auth-Token" not in request.headers
                else "Invalid token",
            )
        if self._oauth is not None:
            auth = request.headers.get("Authorization", "")
            # a Wilma PEP proxy takes the OAuth2 token in X-Auth-Token too
            token = auth[7:] if auth.startswith("Bearer ") else request.headers.get("X-Auth-Token", "")
            expiry = self._oauth.tokens.get(token)
            if expiry is None or now >= expiry:
                return _json(
                    401,
                    {"error": "invalid_token", "error_description": "missing, unknown or expired token"},
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
        return None

    def _refused_entity(self, entities: list[dict[str, Any]]) -> web.Response | None:
        for entity in entities:
            if entity["id"] in self._refused_entities:
                return _json(400, {"error": "BadRequest", "description": self._refused_entities[entity["id"]]})
        return None

    async def _v2_update(self, request: web.Request) -> web.Response:
        """`POST /v2/op/update`: validated whole, then applied entity by entity as Orion's mongoBackend does."""
        body = await request.read()
        early = await self._gate(request, body)
        if early is not None:
            return self._log(request, body, early)
        query = {k: request.query.getall(k) for k in request.query}
        status, doc = orion_rules.validate_v2_update(request.headers, body, query=query, tolerate=self.tolerate)
        if status != 204:
            return self._log(request, body, _json(status, doc))
        batch = orjson.loads(body)
        action, entities = batch["actionType"], batch["entities"]
        refused = self._refused_entity(entities)
        if refused is not None:
            return self._log(request, body, refused)
        service = request.headers.get("Fiware-Service", "").lower()
        path = request.headers.get("Fiware-ServicePath", "/")
        limit = self._unimplemented(service, path, action, entities)
        if limit is not None:
            return self._log(request, body, _json(501, {"error": "NotImplemented", "description": limit}))
        error = _OrionError()
        coverage: _Coverage | None = None
        changed = False
        for entity in entities:
            done, changes = self._apply(service, path, action, entity, error)
            coverage, changed = _combine(coverage, done), changed or changes
        if changed:
            self.update_count += 1
        if coverage is _Coverage.PARTIAL:  # some done, some not (mongoUpdateContext.cpp)
            error.status, error.error = 422, "PartialUpdate"
        if error.status:
            return self._log(
                request, body, _json(error.status, {"error": error.error, "description": error.description})
            )
        return self._log(request, body, web.Response(status=204))

    def _unimplemented(self, service: str, path: str, action: str, entities: list[dict[str, Any]]) -> str | None:
        """Why the double cannot do this batch as Orion would, checked before anything is written."""
        known = {key[2]: e["type"] for key, e in self.entities.items() if key[:2] == (service, path)}
        for entity in entities:
            eid, etype = entity["id"], entity.get("type")
            attrs = _attrs(entity)
            if action in ("append", "appendStrict"):
                if eid in known and etype is not None and known[eid] != etype:
                    return (
                        f"the Orion double keeps one entity per id in a service path: {eid} is a {known[eid]}, "
                        f"got type {etype}"
                    )
                known.setdefault(eid, etype or "Thing")
            elif action == "delete":
                stored = self.entities.get((service, path, eid)) or {}
                located = [name for name, attr in attrs.items() if _is_location(attr, stored.get(name))]
                if located:
                    # Orion answers 204 and keeps it (deleteContextAttributeItem gives up without an error)
                    return f"the Orion double does not implement deleting a location attribute, got {located[0]}"
                if not attrs and (etype is None or known.get(eid) == etype):
                    known.pop(eid, None)
        return None

    def _apply(
        self, service: str, path: str, action: str, entity: dict[str, Any], error: _OrionError
    ) -> tuple[_Coverage, bool]:
        """One entity of a batch (processContextElement and updateEntity in MongoCommonUpdate.cpp): how much
        of it was done, and whether the store changed."""
        key = (service, path, entity["id"])
        etype = entity.get("type")
        label = f"{entity['id']}/{etype}" if etype is not None else entity["id"]
        attrs = _attrs(entity)
        current = self.entities.get(key)
        if current is not None and etype is not None and current["type"] != etype:
            current = None  # Orion looks entities up by id and type
        if current is None:
            if action in ("update", "replace", "delete"):
                error.fill_or_append(
                    404, "NotFound", f"do not exist: {label} - [entity itself]", f", {label} [entity itself]"
                )
                return _Coverage.ENTITY_NOT_FOUND, False
            self._create(key, entity)
            return _Coverage.SUCCESS, True
        if action == "delete" and not attrs:
            del self.entities[key]
            self._locations.pop(key, None)
            return _Coverage.SUCCESS, True
        if action == "replace":
            location = next((name for name, attr in attrs.items() if _is_location(attr, current.get(name))), None)
            self.entities[key] = {"id": current["id"], "type": current["type"], **attrs}
            self._set_location(key, location)
            self.written.append(entity)
            return _Coverage.SUCCESS, True
        existing = [name for name in attrs if name in current]
        missing = [name for name in attrs if name not in current]
        failed = existing if action == "appendStrict" else missing if action in ("update", "delete") else []
        done = {name: attr for name, attr in attrs.items() if name not in failed}
        changed = bool(done)
        if action == "delete":
            for name in done:
                del current[name]
                if self._locations.get(key) == name:
                    self._set_location(key, None)
        else:
            after = self._location_after(key, current, done, append=action != "update")
            if isinstance(after, tuple):
                error.fill(*after)  # the entity is left as it was
                changed = False
            else:
                _append(current, done)
                self._set_location(key, after)
                if done:
                    self.written.append(
                        entity if done == attrs else {"id": entity["id"], "type": current["type"], **done}
                    )
        if failed:
            names = f"[ {', '.join(failed)} ]"
            if action == "appendStrict":
                intro = "one or more of the attributes in the request already exist: "
                error.fill_or_append(422, "Unprocessable", f"{intro}{label} - {names}", f", {label} - {names}")
            else:
                error.fill_or_append(422, "Unprocessable", f"do not exist: {label} - {names}", f", {label} - {names}")
            return (_Coverage.FULL_ATTRS_FAIL if len(failed) == len(attrs) else _Coverage.PARTIAL), changed
        return _Coverage.SUCCESS, changed

    def _create(self, key: tuple[str, str, str], entity: dict[str, Any]) -> None:
        attrs = _attrs(entity)
        self.entities[key] = {"id": entity["id"], "type": entity.get("type", "Thing"), **attrs}
        # the rules refused more than one location in an entity already (413)
        self._set_location(key, next((name for name, attr in attrs.items() if _is_location(attr, None)), None))
        self.written.append(entity)

    def _set_location(self, key: tuple[str, str, str], name: str | None) -> None:
        if name is None:
            self._locations.pop(key, None)
        else:
            self._locations[key] = name

    def _location_after(
        self, key: tuple[str, str, str], current: dict[str, Any], attrs: Mapping[str, Any], *, append: bool
    ) -> str | tuple[int, str, str] | None:
        """The entity's location attribute once `attrs` are appended or updated, or the error when an append
        would give it a second one (processLocationAtAppendAttribute, processLocationAtUpdateAttribute)."""
        location = self._locations.get(key)
        for name, attr in attrs.items():
            if _is_location(attr, current.get(name)):
                if append and location is not None and location != name:
                    return 413, "NoResourcesAvailable", GEOLOC_413
                location = name
            elif location == name:
                location = None
        return location

    async def _v2_create(self, request: web.Request) -> web.Response:
        """`POST /v2/entities[?options=upsert]`: 204 for any upsert (created or updated, as Orion's API says),
        else 201 with a Location when created and 422 `Already Exists` when it exists."""
        body = await request.read()
        early = await self._gate(request, body)
        if early is not None:
            return self._log(request, body, early)
        query = {k: request.query.getall(k) for k in request.query}
        status, doc, options = orion_rules.validate_v2_create(
            request.headers, body, query=query, tolerate=self.tolerate
        )
        if status != 201:
            return self._log(request, body, _json(status, doc))
        entity = orjson.loads(body)
        refused = self._refused_entity([entity])
        if refused is not None:
            return self._log(request, body, refused)
        service = request.headers.get("Fiware-Service", "").lower()
        path = request.headers.get("Fiware-ServicePath", "/")
        key = (service, path, entity["id"])
        current = self.entities.get(key)
        etype = entity.get("type", "Thing" if current is None else current["type"])  # no type: any type matches
        if current is not None and current["type"] != etype:
            description = f"the Orion double keeps one entity per id in a service path: {entity['id']} is a {current['type']}, got type {etype}"
            return self._log(request, body, _json(501, {"error": "NotImplemented", "description": description}))
        if current is not None and "upsert" not in options:
            return self._log(request, body, _json(422, {"error": "Unprocessable", "description": "Already Exists"}))
        if current is None:
            self._create(key, entity)
        else:  # an upsert of an existing entity is an append
            location = self._location_after(key, current, _attrs(entity), append=True)
            if isinstance(location, tuple):
                return self._log(request, body, _json(location[0], {"error": location[1], "description": location[2]}))
            _append(current, _attrs(entity))
            self._set_location(key, location)
            self.written.append(entity)
        self.update_count += 1
        if current is None and "upsert" not in options:
            location_header = f"/v2/entities/{entity['id']}?type={etype}"
            return self._log(request, body, web.Response(status=201, headers={"Location": location_header}))
        return self._log(request, body, web.Response(status=204))

    async def _v2_query(self, request: web.Request) -> web.Response:
        """`POST /v2/op/query`: the entities of the tenant and service paths matching the selectors, paged;
        normalized (metadata `{}` when none, as Orion renders it) or `keyValues`; `attrs` projects only."""
        body = await request.read()
        early = await self._gate(request, body)
        if early is not None:
            return self._log(request, body, early)
        query = {k: request.query.getall(k) for k in request.query}
        status, doc, spec = orion_rules.validate_v2_query(request.headers, body, query)
        if spec is None:
            return self._log(request, body, _json(status, doc))
        service = request.headers.get("Fiware-Service", "").lower()
        found = [
            entity
            for (svc, path, _), entity in self.entities.items()
            if svc == service
            and _path_selected(path, spec.service_paths)
            and (not spec.entities or any(_selected(entity, s) for s in spec.entities))
        ]
        page = found[spec.offset : spec.offset + spec.limit]
        rendered = [_render_entity(e, spec.attrs, key_values="keyValues" in spec.options) for e in page]
        headers = {"Fiware-Total-Count": str(len(found))} if "count" in spec.options else None
        return self._log(request, body, _json(200, rendered, headers=headers))

    async def _v2_register(self, request: web.Request) -> web.Response:
        """`POST /v2/registrations`: 201 with the new registration's Location."""
        body = await request.read()
        early = await self._gate(request, body)
        if early is not None:
            return self._log(request, body, early)
        query = {k: request.query.getall(k) for k in request.query}
        status, doc = orion_rules.validate_v2_registration(request.headers, body, query=query)
        if status != 201:
            return self._log(request, body, _json(status, doc))
        registration_id = secrets.token_hex(12)  # Orion's ids are 24 hex digits (MongoDB ObjectIds)
        service = request.headers.get("Fiware-Service", "").lower()
        path = request.headers.get("Fiware-ServicePath", "/")
        self.registrations[(service, path, registration_id)] = orjson.loads(body)
        location = f"{V2_REGISTRATIONS}/{registration_id}"
        return self._log(request, body, web.Response(status=201, headers={"Location": location}))

    async def _ld_upsert(self, request: web.Request) -> web.Response:
        """`POST /ngsi-ld/v1/entityOperations/upsert`: `?options=update` appends to an existing entity, else
        (`replace`, the default) the entity is overwritten."""
        body = await request.read()
        early = await self._gate(request, body)
        if early is not None:
            return self._log(request, body, early)
        query = {k: request.query.getall(k) for k in request.query}
        status, doc, mode = orion_rules.ld_upsert_mode(query)
        if status == 200:
            status, doc = orion_rules.validate_ld_upsert(request.headers, body)
        if status not in (201, 204, 207):
            return self._log(request, body, _json(status, doc, content_type="application/json"))
        entities = orjson.loads(body)
        refused = (
            {e["entityId"]: e for e in (doc or {}).get("errors", [])} if status == 207 and isinstance(doc, dict) else {}
        )
        errors = list(refused.values())
        success: list[str] = []
        created: list[str] = []
        tenant = request.headers.get("NGSILD-Tenant", "")
        for entity in entities:
            eid = entity["id"]
            if eid in refused:
                continue
            if eid in self._ld_unreported:
                continue
            if eid in self._ld_raw_errors:
                errors.append({"entityId": eid, "error": self._ld_raw_errors[eid]})
                continue
            fault = self._ld_entity_faults.get(eid)
            if fault is not None:
                kind = "BadRequestData" if fault[0] < 500 else "InternalError"
                problem = {"type": f"https://uri.etsi.org/ngsi-ld/errors/{kind}", "title": fault[1], "status": fault[0]}
                errors.append({"entityId": eid, "error": problem})
                continue
            key = (tenant, eid)
            if key not in self.ld_entities:
                created.append(eid)
            if mode == "replace" or key not in self.ld_entities:
                self.ld_entities[key] = dict(entity)
            else:
                self.ld_entities[key].update(_attrs(entity))
            self.written.append(entity)
            success.append(eid)
        self.update_count += 1
        if errors or len(success) < len(entities):  # an entity left out of the answer is a 207 too
            return self._log(request, body, _json(207, {"success": success, "errors": errors}))
        if created:
            return self._log(request, body, _json(201, created))
        return self._log(request, body, web.Response(status=204))

    async def _token(self, request: web.Request) -> web.Response:
        body = await request.read()
        scripted = self._scripted(request, body)
        if scripted is not None:
            return self._log(request, body, scripted)
        oauth = self._oauth
        if oauth is None:
            return self._log(request, body, web.Response(status=404))
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            client_id, client_secret = unquote_plus(user), unquote_plus(password)
        if form.get("grant_type") != "client_credentials":
            return self._log(request, body, _json(400, {"error": "unsupported_grant_type"}))
        if client_id is None or client_secret is None or oauth.clients.get(client_id) != client_secret:
            return self._log(
                request,
                body,
                _json(401, {"error": "invalid_client", "error_description": "Invalid client credentials"}),
            )
        token = secrets.token_hex(16)
        oauth.tokens[token] = self.clock() + oauth.expires_in
        self.token_fetches += 1
        doc = {"access_token": token, "token_type": "Bearer", "expires_in": oauth.expires_in}
        return self._log(request, body, _json(200, doc))


def _path_selected(path: str, selected: tuple[str, ...]) -> bool:
    """Orion's service path scoping for queries: `/a` is that path only, `/a/#` it and below, `/#` all."""
    for wanted in selected:
        if wanted == "/#":
            return True
        if wanted.endswith("/#"):
            root = wanted[:-2]
            if path == root or path.startswith(root + "/"):
                return True
        elif path == wanted:
            return True
    return False


def _selected(entity: dict[str, Any], selector: dict[str, str]) -> bool:
    # POSIX regexec, as Orion uses it, finds a match anywhere unless the pattern is anchored
    if "id" in selector and entity["id"] != selector["id"]:
        return False
    if "idPattern" in selector and re.search(selector["idPattern"], entity["id"]) is None:
        return False
    if "type" in selector and entity.get("type") != selector["type"]:
        return False
    return "typePattern" not in selector or re.search(selector["typePattern"], entity.get("type", "")) is not None


def _render_entity(entity: dict[str, Any], attrs: tuple[str, ...] | None, *, key_values: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"id": entity["id"], "type": entity.get("type", "Thing")}
    for name, attr in entity.items():
        if name in ("id", "type") or (attrs is not None and name not in attrs and "*" not in attrs):
            continue
        if key_values:
            out[name] = attr.get("value")
        else:
            out[name] = {"type": attr.get("type"), "value": attr.get("value"), "metadata": attr.get("metadata") or {}}
    return out


@pytest.fixture
async def orion_double() -> AsyncIterator[OrionDouble]:
    """A plain-HTTP double on 127.0.0.1, validating like Orion."""
    async with OrionDouble() as double:
        yield double


@pytest.fixture(scope="session")
def orion_tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return make_tls_material(tmp_path_factory.mktemp("orion-tls"))


@pytest.fixture
async def orion_double_tls(orion_tls_material: TlsMaterial) -> AsyncIterator[OrionDouble]:
    """An HTTPS double with a test-CA certificate that requires a client certificate of the same CA."""
    async with OrionDouble(tls=orion_tls_material, require_client_cert=True) as double:
        yield double
