"""/audit on a log whose values were edited to another SQLite type: the problems listed, the values shown as such.

Regression of a review: an entry's `at` set to 9e999 (Inf) or its actor to a BLOB made verify raise, and the page
answered 500 instead of naming the edited entry.
"""

from __future__ import annotations

import html
import re
import sqlite3

from gateway.accounts.store import Role
from tests.web.conftest import WebEnv, login

T0 = 1_796_000_000.0


async def test_the_audit_page_names_an_entry_edited_to_another_type(web_env: WebEnv) -> None:
    web_env.add_user("root1", Role.ADMIN)
    await login(web_env.client, "root1")
    for i in range(2):
        web_env.audit.append(actor="tanaka", action="logout", address="192.0.2.1", at=T0 + i)
    (newest,) = web_env.audit.entries(limit=1)
    edited = newest.id - 1
    db = sqlite3.connect(web_env.audit.path, isolation_level=None)
    try:
        db.execute("UPDATE entries SET at = 9e999, actor = CAST('tanaka' AS BLOB) WHERE id = ?", (edited,))
    finally:
        db.close()
    response = await web_env.client.get("/audit")
    assert response.status == 200
    page = html.unescape(await response.text())
    assert re.findall(r"<li>([^<]*)</li>", page) == [
        f"audit entry {edited}: edited (its MAC does not match its contents)"
    ]
    row = re.search(rf'<tr class="entry" data-id="{edited}">(.*?)</tr>', page, re.S)
    assert row is not None
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1))
    assert cells[:4] == [str(edited), "(unreadable: inf)", "(unreadable: 6 bytes x'74616e616b61')", "logout"]
