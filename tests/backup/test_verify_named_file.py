"""A backup file the caller names (`edgegw backup verify FILE`, the restore's stage) is read through no link, never
as a FIFO, and no bytes of a file that is no backup are quoted.

`sudo edgegw backup verify <data_dir>/backups/edgegw-….tar.gz` opened the name as given: a link the service user put
there had root read the file it leads to (/etc/shadow), and gzip's error quoted its first bytes (`Not a gzipped file
(b'ro')`); a FIFO under the name hung verify (and a restore's stage, holding its lock) until someone wrote to it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.backup import archive
from gateway.cli import main
from tests.backup.test_restore_config import SERVICE_USER, as_root
from tests.backup.test_root_links import NIGHT, REPO, SECRET, _link_as_service_user, _victim_untouched

NAME = archive.file_name("fixture-gw", NIGHT)


def _refused(path: Path, what: str) -> str:
    return (
        f"backup: {path} must be a backup file, got {what}; nothing read through it: name the backup file itself, "
        f"not a link to it; if you did not put that there, a process that may write {path.parent} did: find it, "
        f"then remove {path}"
    )


@as_root
def test_a_link_the_service_user_put_under_a_backups_name_is_not_read_by_roots_verify_or_restore(
    searchable_box: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, data_dir = searchable_box
    made = archive.create(
        data_dir=data_dir, config_path=config, gateway_id="fixture-gw", out_dir=data_dir / "backups", now=NIGHT
    )
    os.chown(made.parent, *SERVICE_USER)  # <data_dir>/backups is the service user's
    victim = data_dir.parent / "victim"
    victim.mkdir(mode=0o700)
    (victim / "shadow").write_bytes(SECRET)
    (victim / "shadow").chmod(0o600)
    made.rename(made.with_name(made.name + ".moved"))
    _link_as_service_user(victim / "shadow", made)
    expected = _refused(made, f"a symbolic link to {victim / 'shadow'}")

    for scratch in (None, data_dir):
        with pytest.raises(archive.BackupError) as refused:
            archive.verify(made, data_dir=scratch)
        assert str(refused.value) == expected
    with (
        pytest.raises(archive.BackupError) as refused,
        archive.stage(made, data_dir=data_dir, config_path=config, gateway_id="fixture-gw"),
    ):
        pass
    assert str(refused.value) == expected
    assert main(["backup", "verify", str(made), "-c", str(config)]) == 1
    assert capsys.readouterr().err == expected + "\n"
    assert [p.name for p in data_dir.iterdir() if p.name.startswith((".verify-", ".restore-staging-"))] == []
    _victim_untouched(victim)


def test_a_fifo_under_a_backups_name_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / NAME
    os.mkfifo(fifo, 0o600)
    # in a process of its own: the old verify blocked in open() until a writer came, which no test thread could undo
    run = (
        "import sys; from pathlib import Path; from gateway.backup import archive\n"
        "try:\n    archive.verify(Path(sys.argv[1]))\nexcept archive.BackupError as exc:\n    print(exc)\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", run, str(fifo)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"verify of a FIFO at {fifo} still waiting after 20 s")
    assert (done.returncode, done.stderr, done.stdout) == (0, "", _refused(fifo, "no regular file") + "\n")


def test_a_file_that_is_no_backup_has_none_of_its_bytes_quoted(tmp_path: Path) -> None:
    other = tmp_path / NAME
    other.write_bytes(SECRET)
    with pytest.raises(archive.BackupError) as refused:
        archive.verify(other)
    assert str(refused.value) == (
        f"backup {other}: the file is damaged or truncated, got BadGzipFile: no gzip data where a backup's must be; "
        "use another generation"
    )
