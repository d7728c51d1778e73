"""Inquiry exports: CSV for Excel (UTF-8 with BOM, JST times) and a signed manifest that proves the file.

The manifest names the file, its SHA-256 and row count, the query, who exported it, the inquiry's
reference number and when; it is signed with the gateway's Wi-Fi log key (gateway.wifilog.signing).
`verify_export` recomputes the hash and checks the signature against a trusted public key.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.wifilog.sessions import Session
from gateway.wifilog.signing import Signer, verify_document
from gateway.wifilog.store import JST, Query

__all__ = ["COLUMNS", "MANIFEST_TYPE", "render_csv", "spreadsheet_cell", "verify_export", "write_export"]

MANIFEST_TYPE = "edgegw.wifilog.export-manifest"
COLUMNS = (
    "start_jst",
    "stop_jst",
    "last_update_jst",
    "duration_s",
    "client_mac",
    "user_name",
    "framed_ip",
    "ap_mac",
    "ssid",
    "nas",
    "session_id",
    "input_octets",
    "output_octets",
    "terminate_cause",
    "source",
)


def _jst(t: datetime | None) -> str:
    return "" if t is None else t.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S")


# What makes a spreadsheet read a cell as a formula (OWASP "CSV injection"): = + - @ first, also after blanks
# it trims, and a leading TAB, CR or LF, which some strip before looking. RADIUS User-Name, Acct-Session-Id and
# NAS-Identifier come from the network as they are.
FORMULA_START = ("=", "+", "-", "@")
CONTROL_START = ("\t", "\r", "\n")


def spreadsheet_cell(value: object) -> str:
    """`value` as a CSV cell no spreadsheet runs: one that could start a formula gets a leading `'`, which makes
    it text (shown without the quote). Every CSV the gateway writes goes through here."""
    text = "" if value is None else str(value)
    if text.startswith(CONTROL_START) or text.lstrip().startswith(FORMULA_START):
        return "'" + text
    return text


def render_csv(sessions: Sequence[Session]) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for s in sessions:
        writer.writerow(
            [
                _jst(s.start),
                _jst(s.stop),
                _jst(s.last_update),
                spreadsheet_cell(s.duration_s),
                spreadsheet_cell(s.client_mac),
                spreadsheet_cell(s.user_name),
                spreadsheet_cell(s.framed_ip),
                spreadsheet_cell(s.ap_mac),
                spreadsheet_cell(s.ssid),
                spreadsheet_cell(s.nas),
                spreadsheet_cell(s.session_id),
                spreadsheet_cell(s.input_octets),
                spreadsheet_cell(s.output_octets),
                spreadsheet_cell(s.terminate_cause),
                spreadsheet_cell(s.source),
            ]
        )
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def write_export(
    sessions: Sequence[Session],
    query: Query,
    *,
    signer: Signer,
    reference: str,
    who: str,
    now: datetime,
    csv_path: Path,
    gateway_id: str = "",
) -> dict[str, Any]:
    """Write the CSV and `<csv>.manifest.json`; returns the signed manifest."""
    data = render_csv(sessions)
    csv_path.write_bytes(data)
    manifest = signer.sign(
        {
            "type": MANIFEST_TYPE,
            "version": 1,
            "gateway_id": gateway_id,
            "file": csv_path.name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "rows": len(sessions),
            "query": query.describe(),
            "reference": reference,
            "exported_by": who,
            "exported_at": now.astimezone(JST).isoformat(),
        }
    )
    manifest_path(csv_path).write_text(json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n")
    return manifest


def manifest_path(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.name + ".manifest.json")


def verify_export(csv_path: Path, manifest: dict[str, Any], public_key: Ed25519PublicKey) -> list[str]:
    """Problems with an export (empty when the file is the one signed, unaltered)."""
    problems = verify_document(manifest, public_key)
    if manifest.get("type") != MANIFEST_TYPE:
        problems.append(f"type: not an export manifest, got {manifest.get('type')!r}")
    digest = hashlib.sha256(csv_path.read_bytes()).hexdigest()
    if digest != manifest.get("sha256"):
        problems.append(f"{csv_path.name}: SHA-256 differs from the manifest (file altered), got {digest[:16]}…")
    return problems
