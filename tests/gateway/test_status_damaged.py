"""`edgegw status` on a status file that is not one: a line naming the file, never a traceback.

status.json is rewritten every few seconds without a sync (an SD card wears with each), so a power cut
can leave it empty or cut short; the command printed a JSONDecodeError or KeyError traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import cli
from gateway.app import STATUS_FILE


@pytest.mark.parametrize(
    "text",
    [
        "",
        '{"gateway": "gw-1", "version": "1',
        '{"gateway": "gw-1"}',
        "[1, 2]",
        '{"gateway": 1, "version": 2, "pid": 3, "adapters": 7, "uplinks": []}',
    ],
    ids=["empty", "cut", "keys-missing", "not-an-object", "wrong-types"],
)
def test_a_damaged_status_file_is_named_with_what_to_do(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nid = "gw-1"\ndata_dir = "{tmp_path}"\n\n'
        '[[adapters]]\nname = "gauges"\ntype = "simulated"\n\n'
        '[[uplinks]]\nname = "orion"\ntype = "orion"\nurl = "http://127.0.0.1:1"\n'
    )
    (tmp_path / STATUS_FILE).write_text(text)
    assert cli.main(["status", "-c", str(config)]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == (
        f"{tmp_path / STATUS_FILE}: not a status document (damaged, or written by another edgegw version); is the "
        "gateway running? It rewrites the file every few seconds\n"
    )


def test_a_status_file_that_is_not_utf8_is_named_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nid = "gw-1"\ndata_dir = "{tmp_path}"\n\n'
        '[[uplinks]]\nname = "orion"\ntype = "orion"\nurl = "http://127.0.0.1:1"\n'
    )
    (tmp_path / STATUS_FILE).write_bytes(b'{"gateway": "\xff"}')
    assert cli.main(["status", "-c", str(config)]) == 1
    assert "not a status document" in capsys.readouterr().err
