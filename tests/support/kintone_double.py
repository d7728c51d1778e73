"""A strict stand-in for kintone's REST API on loopback: form fields, add records, update/upsert records.

Written from Cybozu's documentation, independently of the uplink's code:

- kintone REST API common specification (authentication headers, URLs, guest spaces):
  https://cybozu.dev/ja/kintone/docs/rest-api/overview/kintone-rest-api-overview
- Add records `POST /k/v1/records.json` (at most 100 records; all or nothing; an unknown field code
  is ignored; response `ids`/`revisions`): https://cybozu.dev/ja/kintone/docs/rest-api/records/add-records/
- Update records `PUT /k/v1/records.json` (`id` or `updateKey`, not both; updateKey only on a text
  (1 line) or number field with prohibit-duplicates; `upsert: true` adds a record for a key not
  found; response `records[].id/revision/operation`):
  https://cybozu.dev/ja/kintone/docs/rest-api/records/update-records and
  https://kintone.dev/en/docs/kintone/rest-api/records/update-records
- Get form fields `GET /k/v1/app/form/fields.json` (`properties`, `revision`):
  https://cybozu.dev/ja/kintone/docs/rest-api/apps/form/get-form-fields/
- Field formats (number strings, date/time formats, choices): https://cybozu.dev/ja/kintone/docs/overview/field-types
  and https://kintone.dev/en/docs/kintone/rest-api/overview/kintone-rest-api-overview/
- Limits: 100 concurrent requests per domain (more get 429), 10,000 requests per app and day on the
  standard course (not refused: a mail to the administrator), reset at 09:00 JST:
  https://cybozu.dev/ja/kintone/tips/best-practices/secure-operation-of-forms-and-viewers and
  https://cybozu.dev/ja/kintone/tips/best-practices/performance/kintone-api-request-limit-exceeded-guide
- Error bodies `{"id", "code", "message", "errors"}` and the codes CB_VA01 (validation, per value
  `records[i].<code>.value: {"messages": [...]}`), CB_NO02 (no permission), CB_IL02 (bad request):
  the messages are those kintone shows (e.g. 「必須です。」「"x"は選択肢にありません。」, as quoted by
  https://support.gusuku.io/ja-JP/support/solutions/articles/36000243836 and
  https://toyokumo-blog.kintoneapp.com/kintone-error-code/). GAIA_IA02 (invalid API token, 401), CB_WA01 (password authentication failed, 401),
  GAIA_NO01 (token without the permission, 403) and GAIA_AP01 (no such app, 404) are as the
  official SDK's error handling shows them; their exact wording is not load-bearing here.

Faults are scripted per test: answer a status for N requests (`fail`), or until told otherwise.
"""

from __future__ import annotations

import base64
import re
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.support.orion_double import TlsMaterial

MAX_RECORDS = 100
BODY = web.RequestKey("body", bytes)
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2})?(Z|[+-]\d{2}:\d{2}))?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^\d{2}:\d{2}(:\d{2})?$")
TEXT = {"SINGLE_LINE_TEXT", "MULTI_LINE_TEXT", "RICH_TEXT", "LINK"}
SYSTEM = {"RECORD_NUMBER", "CREATOR", "CREATED_TIME", "MODIFIER", "UPDATED_TIME", "CALC", "STATUS", "CATEGORY"}


def form_field(code: str, type_: str, label: str = "", **props: Any) -> dict[str, Any]:
    """A fields.json property as kintone returns it (booleans as JSON booleans, lengths as strings)."""
    out: dict[str, Any] = {"type": type_, "code": code, "label": label or code, "noLabel": False}
    if type_ not in SYSTEM:
        out.update(required=False)
    if type_ in ("SINGLE_LINE_TEXT", "NUMBER"):
        out.update(unique=False, defaultValue="", minLength="", maxLength="")
    if type_ in ("DROP_DOWN", "RADIO_BUTTON", "CHECK_BOX", "MULTI_SELECT"):
        choices = props.pop("choices", [])
        out["options"] = {c: {"label": c, "index": str(i)} for i, c in enumerate(choices)}
        out["defaultValue"] = [] if type_ in ("CHECK_BOX", "MULTI_SELECT") else ""
    out.update(props)
    return out


@dataclass
class App:
    app_id: int
    properties: dict[str, dict[str, Any]]
    tokens: set[str] = field(default_factory=set)  # API tokens of this app (all permissions)
    records: list[dict[str, Any]] = field(default_factory=list)  # id → {code: value}, in order added
    revision: int = 1

    def by_key(self, code: str, value: str) -> dict[str, Any] | None:
        for r in self.records:
            if str(r.get(code, "")) == value:
                return r
        return None


@dataclass(frozen=True)
class Logged:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return orjson.loads(self.body)


def _error(status: int, code: str, message: str, errors: dict[str, Any] | None = None) -> web.Response:
    doc: dict[str, Any] = {"code": code, "id": uuid.uuid4().hex[:20], "message": message}
    if errors is not None:
        doc["errors"] = errors
    return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json")


def _ok(doc: dict[str, Any]) -> web.Response:
    return web.Response(status=200, body=orjson.dumps(doc), content_type="application/json")


class KintoneDouble:
    """`tls`: serve HTTPS with its server certificate; `require_client_cert`: secure access (セキュアアクセス),
    where cybozu.com refuses a connection without a client certificate it issued (here: signed by the test CA)."""

    def __init__(self, tls: TlsMaterial | None = None, *, require_client_cert: bool = False) -> None:
        self.tls = tls
        self.require_client_cert = require_client_cert
        self.apps: dict[int, App] = {}
        self.users: dict[str, str] = {}  # login → password (password authentication)
        self.basic: tuple[str, str] | None = None  # cybozu.com Basic authentication, when on
        self.requests: list[Logged] = []
        self.requests_per_app: dict[int, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.concurrency_limit = 100
        self._faults: list[tuple[int, int]] = []  # (status, remaining)
        self.retry_after: str | None = None  # a Retry-After header on the faults' answers
        self.url = ""
        self._runner: web.AppRunner | None = None

    # ---- the test's levers --------------------------------------------------------------------------

    def add_app(self, app_id: int, fields: list[dict[str, Any]], token: str) -> App:
        app = App(app_id, {f["code"]: f for f in fields}, {token})
        self.apps[app_id] = app
        return app

    def fail(self, status: int, count: int) -> None:
        """Answer the next `count` requests with `status` (503: kintone in maintenance; 429: too many)."""
        self._faults.append((status, count))

    def records_of(self, app_id: int) -> list[dict[str, Any]]:
        return self.apps[app_id].records

    # ---- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._gate])
        for prefix in ("/k/v1", "/k/guest/{space}/v1"):
            app.router.add_get(prefix + "/app/form/fields.json", self._fields)
            app.router.add_post(prefix + "/records.json", self._add)
            app.router.add_put(prefix + "/records.json", self._update)
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
        self.url = f"{'https' if ctx else 'http'}://127.0.0.1:{self._runner.addresses[0][1]}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> KintoneDouble:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- gate: faults, concurrency, authentication, logging ------------------------------------------

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            resp = await self._answer(request, body, handler)
        finally:
            self.in_flight -= 1
        self.requests.append(Logged(request.method, request.path_qs, dict(request.headers), body, resp.status))
        return resp

    async def _answer(self, request: web.Request, body: bytes, handler: Any) -> web.StreamResponse:
        if self._faults:
            status, left = self._faults[0]
            self._faults[0] = (status, left - 1)
            if left - 1 <= 0:
                self._faults.pop(0)
            phrase = HTTPStatus(status).phrase
            return web.Response(
                status=status,
                text=f"<html><title>{status} {phrase}</title></html>",
                content_type="text/html",
                headers={"Retry-After": self.retry_after} if self.retry_after is not None else None,
            )
        if self.in_flight > self.concurrency_limit:
            return _error(429, "GAIA_TO04", "同時リクエスト数の上限を超えています。")
        if self.basic is not None:
            expected = "Basic " + base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            if request.headers.get("Authorization") != expected:
                return web.Response(
                    status=401, text="<html><title>401 Unauthorized</title></html>", content_type="text/html"
                )
        request[BODY] = body
        resp: web.StreamResponse = await handler(request)
        return resp

    def _app(self, request: web.Request, app_value: Any) -> App | web.Response:
        """The app the request names, if the credentials may use it."""
        try:
            app_id = int(app_value)
        except (TypeError, ValueError):
            return _error(400, "CB_VA01", "入力内容が正しくありません。", {"app": {"messages": ["必須です。"]}})
        tokens = request.headers.get("X-Cybozu-API-Token")
        password = request.headers.get("X-Cybozu-Authorization")
        app = self.apps.get(app_id)
        if tokens is not None:
            given = [t.strip() for t in tokens.split(",")]
            known = set().union(*(a.tokens for a in self.apps.values())) if self.apps else set()
            if any(t not in known for t in given):
                return _error(401, "GAIA_IA02", "指定したAPIトークンが無効です。")
            if app is None:
                return _error(
                    404,
                    "GAIA_AP01",
                    f"指定したアプリ（id: {app_id}）が見つかりません。削除されている可能性があります。",
                )
            if not app.tokens & set(given):
                return _error(403, "GAIA_NO01", "このAPIトークンでは、指定したAPIを実行できません。")
            return app
        if password is not None:
            try:
                login, _, secret = base64.b64decode(password).decode().partition(":")
            except ValueError:
                return _error(401, "CB_WA01", "ユーザーのパスワード認証に失敗しました。")
            if self.users.get(login) != secret:
                return _error(401, "CB_WA01", "ユーザーのパスワード認証に失敗しました。")
            if app is None:
                return _error(
                    404,
                    "GAIA_AP01",
                    f"指定したアプリ（id: {app_id}）が見つかりません。削除されている可能性があります。",
                )
            return app
        return _error(401, "CB_AU01", "ログインしてください。")

    def _count(self, app: App) -> None:
        self.requests_per_app[app.app_id] = self.requests_per_app.get(app.app_id, 0) + 1

    def _json_body(self, request: web.Request) -> dict[str, Any] | web.Response:
        if request.content_type != "application/json":
            return _error(400, "CB_IL02", "不正なリクエストです。")
        try:
            doc = orjson.loads(request[BODY])
        except orjson.JSONDecodeError:
            return _error(400, "CB_IJ01", "不正なJSON文字列です。")
        return doc if isinstance(doc, dict) else _error(400, "CB_IJ01", "不正なJSON文字列です。")

    # ---- handlers -----------------------------------------------------------------------------------

    async def _fields(self, request: web.Request) -> web.StreamResponse:
        app = self._app(request, request.query.get("app"))
        if isinstance(app, web.Response):
            return app
        self._count(app)
        return _ok({"properties": app.properties, "revision": str(app.revision)})

    async def _add(self, request: web.Request) -> web.StreamResponse:
        doc = self._json_body(request)
        if isinstance(doc, web.Response):
            return doc
        app = self._app(request, doc.get("app"))
        if isinstance(app, web.Response):
            return app
        self._count(app)
        records = doc.get("records")
        if not isinstance(records, list):
            return _error(400, "CB_VA01", "入力内容が正しくありません。", {"records": {"messages": ["必須です。"]}})
        if len(records) > MAX_RECORDS:
            return _error(
                400,
                "CB_VA01",
                "入力内容が正しくありません。",
                {"records": {"messages": [f"一度に{MAX_RECORDS}件までのレコードを操作できます。"]}},
            )
        errors: dict[str, Any] = {}
        new = [self._validate(app, f"records[{i}]", r, errors, new=True, key=None) for i, r in enumerate(records)]
        self._unique_within(app, new, errors)
        if errors:
            return _error(400, "CB_VA01", "入力内容が正しくありません。", errors)
        ids = [self._insert(app, values) for values in new]
        return _ok({"ids": ids, "revisions": ["1"] * len(ids)})

    async def _update(self, request: web.Request) -> web.StreamResponse:
        doc = self._json_body(request)
        if isinstance(doc, web.Response):
            return doc
        app = self._app(request, doc.get("app"))
        if isinstance(app, web.Response):
            return app
        self._count(app)
        records = doc.get("records")
        upsert = doc.get("upsert", False)
        if not isinstance(records, list) or not isinstance(upsert, bool):
            return _error(400, "CB_VA01", "入力内容が正しくありません。", {"records": {"messages": ["必須です。"]}})
        if len(records) > MAX_RECORDS:
            return _error(
                400,
                "CB_VA01",
                "入力内容が正しくありません。",
                {"records": {"messages": [f"一度に{MAX_RECORDS}件までのレコードを操作できます。"]}},
            )
        errors: dict[str, Any] = {}
        plans: list[tuple[dict[str, Any] | None, dict[str, Any], str | None, tuple[str, str] | None]] = []
        seen_keys: set[tuple[str, str]] = set()
        for i, entry in enumerate(records):
            at = f"records[{i}]"
            if not isinstance(entry, dict) or ("id" in entry) == ("updateKey" in entry):
                errors[at] = {"messages": ["idまたはupdateKeyのどちらか一方を指定してください。"]}
                continue
            key = None
            target = None
            if "updateKey" in entry:
                uk = entry["updateKey"]
                code = uk.get("field") if isinstance(uk, dict) else None
                prop = app.properties.get(str(code))
                if prop is None or prop["type"] not in ("SINGLE_LINE_TEXT", "NUMBER") or not prop.get("unique"):
                    errors[f"{at}.updateKey.field"] = {
                        "messages": ["重複禁止が設定された文字列(1行)または数値フィールドを指定してください。"]
                    }
                    continue
                value = uk.get("value")
                if not isinstance(value, (str, int)) or str(value) == "":
                    errors[f"{at}.updateKey.value"] = {"messages": ["必須です。"]}
                    continue
                key = (str(code), str(value))
                if key in seen_keys:
                    errors[f"{at}.updateKey.value"] = {"messages": ["値がほかのレコードと重複しています。"]}
                    continue
                seen_keys.add(key)
                target = app.by_key(*key)
            else:
                target = next((r for r in app.records if str(r["$id"]) == str(entry["id"])), None)
            if target is None and not upsert:
                return _error(404, "GAIA_RE01", "指定したレコードが見つかりません。")
            values = self._validate(app, at, entry.get("record", {}), errors, new=target is None, key=key)
            plans.append((target, values, str(entry.get("id", "")) or None, key))
        if errors:
            return _error(400, "CB_VA01", "入力内容が正しくありません。", errors)
        out = []
        for target, values, _, key in plans:
            if target is None:
                if key is not None:
                    values[key[0]] = key[1]
                rid = self._insert(app, values)
                out.append({"id": rid, "revision": "1", "operation": "INSERT"})
            else:
                target.update(values)
                target["$revision"] += 1
                out.append({"id": str(target["$id"]), "revision": str(target["$revision"]), "operation": "UPDATE"})
        return _ok({"records": out})

    # ---- validation as kintone does it ---------------------------------------------------------------

    def _insert(self, app: App, values: dict[str, Any]) -> str:
        rid = len(app.records) + 1
        app.records.append({"$id": rid, "$revision": 1, **values})
        return str(rid)

    def _validate(
        self, app: App, at: str, record: Any, errors: dict[str, Any], *, new: bool, key: tuple[str, str] | None
    ) -> dict[str, Any]:
        """The record's values by field code; problems into `errors` under kintone's paths."""
        values: dict[str, Any] = {}
        if not isinstance(record, dict):
            errors[at] = {"messages": ["不正なJSON文字列です。"]}
            return values
        for code, wrapped in record.items():
            prop = app.properties.get(code)
            if prop is None or prop["type"] in SYSTEM:
                continue  # kintone ignores field codes the app does not have
            path = f"{at}.{code}.value"
            if not isinstance(wrapped, dict) or "value" not in wrapped:
                errors[path] = {"messages": ["必須です。"]}
                continue
            problem, value = self._value(prop, wrapped["value"])
            if problem:
                errors[path] = {"messages": [problem]}
                continue
            if prop.get("unique") and value not in ("", None):
                other = app.by_key(code, str(value))
                if other is not None and (key is None or app.by_key(*key) is not other):
                    errors[path] = {"messages": ["値がほかのレコードと重複しています。"]}
                    continue
            values[code] = value
        if new:
            for code, prop in app.properties.items():
                given = values.get(code, prop.get("defaultValue", ""))
                if key is not None and code == key[0]:
                    given = key[1]
                if prop.get("required") and given in ("", None, []):
                    errors[f"{at}.{code}.value"] = {"messages": ["必須です。"]}
        return values

    @staticmethod
    def _value(prop: dict[str, Any], value: Any) -> tuple[str, Any]:
        kind = prop["type"]
        if kind in TEXT:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                return "文字列を指定してください。", None
            text = str(value)
            if prop.get("maxLength") and len(text) > int(prop["maxLength"]):
                return f"{prop['maxLength']}文字以下にしてください。", None
            return "", text
        if kind == "NUMBER":
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                return "数字でなければなりません。", None
            if value == "":
                return "", ""
            if not _NUMBER.match(str(value)):
                return "数字でなければなりません。", None
            return "", str(value)
        if kind in ("DROP_DOWN", "RADIO_BUTTON"):
            if value in ("", None) and kind == "DROP_DOWN":
                return "", ""
            if not isinstance(value, str) or value not in prop["options"]:
                return f'"{value}"は選択肢にありません。', None
            return "", value
        if kind in ("CHECK_BOX", "MULTI_SELECT"):
            if not isinstance(value, list):
                return "配列を指定してください。", None
            for v in value:
                if v not in prop["options"]:
                    return f'"{v}"は選択肢にありません。', None
            return "", list(value)
        formats = {"DATETIME": _DATETIME, "DATE": _DATE, "TIME": _TIME}
        if kind in formats:
            if value == "":
                return "", ""
            if not isinstance(value, str) or not formats[kind].match(value):
                return "日付が不正です。", None
            return "", value
        return "このフィールドの値は変更できません。", None

    def _unique_within(self, app: App, new: list[dict[str, Any]], errors: dict[str, Any]) -> None:
        for code, prop in app.properties.items():
            if not prop.get("unique"):
                continue
            seen: set[str] = set()
            for i, values in enumerate(new):
                v = values.get(code)
                if v in ("", None):
                    continue
                if str(v) in seen:
                    errors[f"records[{i}].{code}.value"] = {"messages": ["値がほかのレコードと重複しています。"]}
                seen.add(str(v))


@pytest.fixture
async def kintone_double() -> AsyncIterator[KintoneDouble]:
    async with KintoneDouble() as double:
        yield double
