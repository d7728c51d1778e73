"""The `kintone` uplink: readings as records of one kintone app (add, or upsert on a unique key).

Theory of operation. At start the app's form is fetched (`GET /k/v1/app/form/fields.json`) and
every mapping is checked against it (`form.py`): a wrong field code stops the start with an error
naming it, before anything is sent. If kintone cannot be reached or refuses our credentials then,
the check is made again before the first delivery, and the records wait. A batch is planned into
requests of at most 100 records (`plan.py`) and sent one request at a time, in order (kintone
allows 100 concurrent requests per domain; one is plenty and leaves the rest to the people using
it). Answers (`answers.py`): 200 delivers the request's records; a `CB_VA01` naming records (or a 5xx
such as 520 in kintone's error format naming only records) refuses those with kintone's words and
sends the others again (if it names every record, the form is checked again first: an app edited
since the start must not dead-letter data); credentials, permissions and a wrong app are a
configuration problem (retry, ERROR once, never a dead letter); 429, other 5xx and timeouts are
transient (retry this and every later record of the batch, with the loop's backoff).
Before each request the day's count is checked against `daily_request_limit` (`daily.py`).

State changes are logged once: WARNING when kintone becomes unreachable, INFO when it takes data
again, ERROR when it refuses the credentials, the request or the form.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, NoReturn

from gateway.adapter_api import AdapterContext
from gateway.buffer.store import settled
from gateway.errors import ConfigError, UplinkTransient
from gateway.logs import component_logger
from gateway.records import Reading
from gateway.uplinks.api import DELIVERED, Fault, Lifecycle, Outcome, Status, UplinkConfig
from gateway.uplinks.http.client import HttpResponse, waits_for
from gateway.uplinks.http.oauth2 import say_cleartext
from gateway.uplinks.kintone import plan as planning
from gateway.uplinks.kintone.answers import Kind, classify
from gateway.uplinks.kintone.config import DailyLimitPolicy, KintoneConfig
from gateway.uplinks.kintone.daily import DailyCounter
from gateway.uplinks.kintone.form import FormError, FormField, check_mappings, parse_fields
from gateway.uplinks.kintone.session import KintoneSession, UnusableSecret

# in the data directory: each uplink's daily request count, `<name>.json`
STATE_DIR = "kintone"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class KintoneCounters:
    delivered: int = 0
    rejected: int = 0
    retries: int = 0
    skipped: int = 0  # readings no mapping takes: settled without a request
    requests: int = 0
    last_error: str = ""


class _State(enum.Enum):
    UP = "up"
    DOWN = "down"
    REFUSED = "refused"
    HELD = "held"  # the day's request limit is reached


class _Stop(Exception):
    def __init__(self, reason: str, fault: Fault, retry_after_s: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fault = fault
        self.retry_after_s = retry_after_s


class _FormProblems(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class KintoneUplink(Lifecycle):
    config_model: ClassVar[type[UplinkConfig]] = KintoneConfig

    def __init__(self, config: UplinkConfig, context: AdapterContext, *, now: Callable[[], datetime] = _utcnow) -> None:
        assert isinstance(config, KintoneConfig)
        self.config: KintoneConfig = config
        self.name = config.name
        self.context = context
        self.counters = KintoneCounters()
        self.log = component_logger(__name__, config.name)
        path = Path(context.data_dir) / STATE_DIR / f"{config.name}.json"
        self.daily = DailyCounter(config.daily_request_limit, path, now)
        self._now = now
        self._session: KintoneSession | None = None
        self._started = False  # between start() and close(); the session may be missing (a secret unusable)
        self._form: dict[str, FormField] | None = None
        self._form_check = "not checked yet"
        self._state: _State | None = None
        self._warned_day = ""

    # ---- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the session and check the form; ConfigError if the mapping does not fit the app."""
        cfg = self.config
        if not cfg.tls.checks_peer:
            self.log.warning('TLS certificate verification is off (tls.verify = "off"); use only on a lab network')
        say_cleartext(self.log, cfg.cleartext_hosts(), cfg.allow_insecure_http)
        self._started = True
        self._form = None
        try:
            self._open_session()
            await self._check_form()
        except _FormProblems as exc:
            await self.close()
            raise ConfigError(exc.problems) from None
        except _Stop:
            pass  # unreachable, refused or a secret unusable: logged; tried again before the first delivery

    def _open_session(self) -> None:
        """The session, its secrets resolved now: one stored again (`edgegw secret set`) needs no restart."""
        try:
            self._session = KintoneSession(
                self.config, gateway_id=self.context.gateway_id, data_dir=self.context.data_dir, counter=self.daily
            )
        except UnusableSecret as exc:
            # a configuration refusal, not a failed start: the loop would retry that as transient,
            # and every request would fail in the HTTP library naming no setting
            self._refused("; ".join(exc.errors) + " (readings stay buffered)")

    async def close(self) -> None:
        self._started = False
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _check_form(self) -> None:
        assert self._session is not None
        cfg = self.config
        resp = await self._request("GET", f"app/form/fields.json?app={cfg.app}", None)
        answer = classify(resp.status, resp.body)
        where = f"{self._session.url('app/form/fields.json')} (app {cfg.app})"
        if answer.kind is not Kind.OK:
            self._form_check = f"failed: {answer.text}"
            self._failed(answer.kind, answer.text, resp, where)
        try:
            form = parse_fields(answer.doc)
        except FormError as exc:
            self._form_check = f"failed: {exc}"
            self._refused(f"kintone's form of app {cfg.app} cannot be read, got {exc}")
        problems = check_mappings(cfg.mappings, form, where=f"uplinks.{self.name}")
        if problems:
            self._form_check = "failed: " + "; ".join(problems)
            self.counters.last_error = self._form_check
            self._set_state(_State.REFUSED, f"the mapping does not fit kintone app {cfg.app}: {'; '.join(problems)}")
            raise _FormProblems(problems)
        self._form = form
        self._form_check = f"ok ({len(form)} fields, {self._now().strftime('%Y-%m-%dT%H:%M:%SZ')})"
        self._set_state(_State.UP, "")

    # ---- delivery ----------------------------------------------------------------------------------

    async def deliver(self, batch: Sequence[Reading]) -> list[Outcome]:
        if not self._started:
            raise RuntimeError(f"{self.name}: deliver() called before start()")
        outcomes: list[Outcome | None] = [None] * len(batch)
        retry = Outcome(Status.RETRY, "")
        skipped: Sequence[int] = ()
        try:
            if self._session is None:
                self._open_session()
            if self._form is None:
                await self._recheck_form()
            assert self._form is not None
            planned = planning.plan(batch, self.config.mappings, self._form)
            skipped = planned.unmapped
            for position in skipped:
                outcomes[position] = DELIVERED
            for position, why in planned.refused:
                reason = f"{self.name}: cannot make a kintone record of {batch[position].entity_id}, got {why}"
                outcomes[position] = Outcome(Status.REJECTED, reason)
            for request in planned.requests:
                await self._send(request, batch, outcomes)
        except _Stop as stop:
            retry = Outcome(Status.RETRY, stop.reason, stop.fault, stop.retry_after_s)
        final = [o if o is not None else retry for o in outcomes]
        self._count(batch, final, skipped)
        return final

    def _count(self, batch: Sequence[Reading], final: list[Outcome], skipped: Sequence[int]) -> None:
        """Count delivered, rejected and skipped only where the buffer's acknowledgement settles them: a lane's
        records after its first RETRY are sent again whatever was said of them, and counted then, once."""
        counters = self.counters
        if final.count(DELIVERED) == len(final):
            counters.delivered += len(final)  # the usual batch: no test per record
            counters.skipped += len(skipped)
            return
        done = set(settled(batch, final))
        rejected = sum(1 for i in done if final[i].status is Status.REJECTED)
        counters.delivered += len(done) - rejected
        counters.rejected += rejected
        counters.skipped += sum(1 for i in skipped if i in done)
        counters.retries += sum(1 for o in final if o.status is Status.RETRY)

    async def _send(self, request: planning.Request, batch: Sequence[Reading], outcomes: list[Outcome | None]) -> None:
        """One request, again without the records kintone refused, until it is taken or fails."""
        assert self._session is not None
        items = list(request.items)
        where = self._session.url("records.json")
        rechecked = False
        while items:
            body = planning.body(self.config.app, request, items)
            resp = await self._request(request.method, "records.json", body)
            answer = classify(resp.status, resp.body)
            self.log.debug("%s %s records=%d -> %d", request.method, where, len(items), resp.status)
            if answer.kind is Kind.OK:
                self._set_state(_State.UP, "")
                for item in items:
                    outcomes[item.position] = DELIVERED
                return
            if answer.kind is Kind.RECORDS and all(0 <= i < len(items) for i in answer.refused):
                if len(answer.refused) == len(items) and not rechecked:
                    # Every record refused may mean the app changed since the form check (a field made
                    # required, a choice removed): data must not be dead-lettered for that, so the form
                    # is checked again first; if the mapping still fits, the refusals are about the records.
                    rechecked = True
                    await self._recheck_form()
                for i, words in answer.refused.items():
                    item = items[i]
                    entity = batch[item.position].entity_id
                    outcomes[item.position] = Outcome(
                        Status.REJECTED,
                        f"{self.name}: kintone refused the record of {entity} (app {self.config.app}), "
                        f"got {answer.text} {words}",
                    )
                    self.log.debug("kintone refused the record of %s: %s %s", entity, answer.text, words)
                items = [item for i, item in enumerate(items) if i not in answer.refused]
                continue
            self._failed(answer.kind, answer.text, resp, where)

    async def _recheck_form(self) -> None:
        self._form = None
        try:
            await self._check_form()
        except _FormProblems as exc:
            self._stop("; ".join(exc.problems), Fault.CONFIGURATION)

    async def _request(self, method: str, resource: str, body: bytes | None) -> HttpResponse:
        """Send one request within the day's limit; transport failures stop the batch (transient)."""
        assert self._session is not None
        self._within_daily_limit()
        self.counters.requests += 1
        try:
            return await self._session.request(method, resource, body)
        except UplinkTransient as exc:
            self._down(exc.message)

    def _within_daily_limit(self) -> None:
        daily = self.daily
        if daily.left() > 0:
            return
        resets = daily.resets_at().strftime("%Y-%m-%dT%H:%M:%SZ")
        reason = (
            f"kintone app {self.config.app}: the daily request limit is reached, got {daily.today} requests today "
            f"(daily_request_limit = {daily.limit}); "
        )
        if self.config.on_daily_limit is DailyLimitPolicy.HOLD:
            self.counters.last_error = reason + f"readings stay buffered until the count resets at {resets} (09:00 JST)"
            self._set_state(_State.HELD, self.counters.last_error)
            raise _Stop(self.counters.last_error, Fault.TRANSIENT)
        day = resets[:10]
        if self._warned_day != day:
            self._warned_day = day
            self.log.warning('%ssending on (on_daily_limit = "warn"); kintone may mail the administrator', reason)

    # ---- failures, logged once per state change ------------------------------------------------------

    def _failed(self, kind: Kind, text: str, resp: HttpResponse, where: str) -> NoReturn:
        status = resp.status
        if kind is Kind.TRANSIENT or status >= 500:
            # a 5xx naming records that are not in the request (or answering the form check) is no
            # answer about our records: it stays transient, as every 5xx but those naming records
            self._down(f"kintone at {where} failed, got {text}{waits_for(resp)}", resp.retry_after_s)
        if status == 401:
            fix = "check api_token (a token of this app), or user/password, and basic_auth if cybozu.com asks for it"
        elif status == 403:
            fix = (
                f"the token or user lacks a permission on app {self.config.app}: give it 'view records' and "
                "'add records' (and 'edit records' for upsert), then update the app (アプリを更新)"
            )
        elif status == 404:
            fix = "check app (the number in /k/<app>/) and guest_space_id"
        else:
            fix = "check the uplink's settings"
        self._refused(f"kintone refused the request to {where}, got {text}; {fix} (readings stay buffered)")

    def _set_state(self, state: _State, reason: str) -> None:
        previous, self._state = self._state, state
        if state is previous:
            return
        if state is _State.UP:
            again = " again" if previous is not None else ""
            self.log.info("delivering to kintone app %d at %s%s", self.config.app, self.config.url, again)
            return
        if state is _State.HELD:
            self.log.warning("%s", reason)
        elif state is _State.DOWN:
            self.log.warning("%s; readings stay buffered and are retried", reason)
        else:
            self.log.error("%s", reason)

    def _stop(self, reason: str, fault: Fault, retry_after_s: float = 0.0) -> NoReturn:
        self.counters.last_error = reason
        raise _Stop(reason, fault, retry_after_s)

    def _down(self, reason: str, retry_after_s: float = 0.0) -> NoReturn:
        self._set_state(_State.DOWN, reason)
        self._stop(reason, Fault.TRANSIENT, retry_after_s)

    def _refused(self, reason: str) -> NoReturn:
        self._set_state(_State.REFUSED, reason)
        self._stop(reason, Fault.CONFIGURATION)

    # ---- diagnostics ---------------------------------------------------------------------------------

    def diagnostics(self) -> dict[str, Any]:
        daily = self.daily
        form = self._form_check.split(":", 1)[0].split(" (", 1)[0]
        return {
            "app": self.config.app,
            "requests_today": daily.today,
            "daily_request_limit": daily.limit,
            "daily_count_resets_at": daily.resets_at().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "form_check": self._form_check,
            "skipped": self.counters.skipped,
            "last_error": self.counters.last_error,
            "summary": f"app {self.config.app}: {daily.today}/{daily.limit} requests today, form {form}",
        }
