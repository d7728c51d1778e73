"""`restore --force` keeps this box's gateway id; only `--take-id` gives it the backup's.

The refusal said "pass --force to restore another box's data onto this one", and --force then put the
other box's config in place whole, its gateway.id with it: the box sent under the other box's id,
silently. The config is the technician's text, so only its id line changes (gateway_id.py).
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.backup.gateway_id import with_gateway_id
from gateway.cli import main
from tests.backup.conftest import RELEASE, write_config


@pytest.fixture
def other_box(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path, Path]:
    """(this box's config "kawasaki-a", its data directory, a backup box "kawasaki-b" took of the same path)."""
    data_dir = tmp_path / "data"
    shutil.copytree(RELEASE, data_dir)
    config = write_config(tmp_path / "gateway.toml", data_dir, gateway_id="kawasaki-b")
    config.write_text(config.read_text().replace('kind = "weather"', 'kind = "river-level"  # B\'s sensor'))
    assert main(["backup", "now", "-c", str(config)]) == 0
    backup = tmp_path / "b.tar.gz"
    shutil.move(capsys.readouterr().out.strip(), backup)
    write_config(config, data_dir, gateway_id="kawasaki-a")
    return config, data_dir, backup


def _restore(config: Path, backup: Path, *flags: str) -> int:
    return main(["backup", "restore", str(backup), "--service-manager", "none", "-c", str(config), *flags])


def test_another_boxs_backup_is_refused_naming_both_ways_on(
    other_box: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, backup = other_box
    before = config.read_text()
    assert _restore(config, backup) == 1
    assert capsys.readouterr().err.strip() == (
        f"backup {backup}: taken by gateway 'kawasaki-b', got this gateway 'kawasaki-a'; nothing was stopped or "
        "changed: pass --force to restore its data and config onto this box keeping the id 'kawasaki-a', or "
        "--take-id to give this box the id 'kawasaki-b' too (it replaces that box)"
    )
    assert config.read_text() == before


def test_force_restores_the_other_boxs_config_with_this_boxs_id(
    other_box: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, backup = other_box
    assert _restore(config, backup, "--force") == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"restored {backup}; ")
    assert out.endswith("; this box's gateway id stays 'kawasaki-a' (the backup's config had 'kawasaki-b')")
    text = config.read_text()
    assert tomllib.loads(text)["gateway"]["id"] == "kawasaki-a"
    assert 'kind = "river-level"  # B\'s sensor' in text  # the rest is the backup's, comments and all


def test_take_id_gives_this_box_the_backups_id_and_says_so(
    other_box: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, backup = other_box
    assert _restore(config, backup, "--take-id") == 0
    assert (
        capsys.readouterr()
        .out.strip()
        .endswith("; this box's gateway id is now 'kawasaki-b', the backup's (it was 'kawasaki-a')")
    )
    assert tomllib.loads(config.read_text())["gateway"]["id"] == "kawasaki-b"


def test_an_id_restore_cannot_rewrite_is_refused_before_anything_stops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(RELEASE, data_dir)
    config = write_config(tmp_path / "gateway.toml", data_dir, gateway_id="kawasaki-b")
    inline = f'gateway = {{ id = "kawasaki-b", data_dir = "{data_dir}" }}\n'
    config.write_text(inline + config.read_text().split("[backup]", 1)[1].join(["[backup]", ""]))
    assert main(["backup", "now", "-c", str(config)]) == 0
    backup = Path(capsys.readouterr().out.strip())
    write_config(config, data_dir, gateway_id="kawasaki-a")
    before = config.read_text()
    assert _restore(config, backup, "--force") == 1
    assert capsys.readouterr().err.strip() == (
        f"backup {backup}: cannot keep this box's gateway id 'kawasaki-a' in config/gateway.toml, got a gateway.id "
        'that is not one `id = "…"` line of its [gateway] table (an inline table?); nothing was stopped or changed: '
        "stop the services (systemctl stop edgegw-kiosk edgegw-web edgegw), restore with --take-id "
        f'--service-manager none, set gateway.id = "kawasaki-a" in {config}, then start them'
    )
    assert config.read_text() == before
    assert not [p for p in data_dir.iterdir() if p.name.startswith((".pre-restore-", ".restore-staging-"))]


# -- the rewrite itself -------------------------------------------------------------------------------------------

_IDS = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)
_SPACE = st.sampled_from(["", " ", "  ", "\t"])
_COMMENT = st.sampled_from(["", "  # this box", " #", "# [gateway]\n# id = 'no'"])
_KEY = st.sampled_from(["id", '"id"', "'id'"])
_TABLE = st.sampled_from(["[gateway]", "[ gateway ]", '["gateway"]', "[gateway]  # the box"])
_OTHER = st.sampled_from(
    [
        "",
        "[buffer]\nmax_rows = 10\n",
        '[[adapters]]\nname = "sim"\nid = "not-the-gateway"\n',
        'notes = """\n[gateway]\nid = "inside a string"\n"""\n',
        "[gateway.extra]\nid = 'a sub-table'\n",
    ]
)


@st.composite
def _configs(draw: st.DrawFn) -> tuple[str, str]:
    """(a config text, its gateway id), in the forms a technician writes."""
    gateway_id = draw(_IDS)
    quote = draw(st.sampled_from(['"', "'"]))
    line = f"{draw(_SPACE)}{draw(_KEY)}{draw(_SPACE)}={draw(_SPACE)}{quote}{gateway_id}{quote}{draw(_COMMENT)}"
    before = draw(st.sampled_from(["", 'log_level = "info"\n']))
    gateway = f'{draw(_TABLE)}\n{before}{line}\ndata_dir = "/var/lib/edgegw"\n'
    head, tail = draw(st.lists(_OTHER, min_size=2, max_size=2, unique=True))  # a table defined twice is no TOML
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return (head + gateway + tail).replace("\n", newline), gateway_id


def _same_but_id(before: str, after: str, gateway_id: str) -> bool:
    old, new = tomllib.loads(before), tomllib.loads(after)
    return new == {**old, "gateway": {**old["gateway"], "id": gateway_id}}


@given(_configs(), _IDS)
def test_the_id_line_alone_changes(config: tuple[str, str], new_id: str) -> None:
    text, _ = config
    after = with_gateway_id(text, new_id)
    assert after is not None, text
    assert _same_but_id(text, after, new_id)
    changed = [(a, b) for a, b in zip(text.splitlines(), after.splitlines(), strict=True) if a != b]
    assert len(changed) <= 1  # the same id written again changes nothing


@given(st.text(max_size=200), _IDS)
def test_any_text_is_rewritten_exactly_or_not_at_all(text: str, new_id: str) -> None:
    after = with_gateway_id(text, new_id)
    if after is not None:
        assert _same_but_id(text, after, new_id)


@pytest.mark.parametrize(
    "text",
    [
        'gateway = { id = "b" }\n',  # an inline table: no line of its own
        '[gateway]\nid = "b"\nid = "c"\n',  # not TOML
        '[gateway]\ndata_dir = "/x"\n',  # no id to keep
        'gateway.id = "b"\n[gateway]\nid = "c"\n',  # not TOML either: defined twice
    ],
)
def test_what_cannot_be_rewritten_with_certainty_is_none(text: str) -> None:
    assert with_gateway_id(text, "kawasaki-a") is None


def test_a_top_level_dotted_key_is_rewritten() -> None:
    assert with_gateway_id('gateway.id = "b"  # B\n', "a") == 'gateway.id = "a"  # B\n'
