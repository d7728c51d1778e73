"""An export's files are removed by name in the directory they were made in, never through the path again.

Under sudo, root makes the files, a child that became the gateway's account fills them, and root removes them
if the child fails (gateway.wifilog.cli). A review found root removing by path: with an --out reaching through a
link the account may change, the account swapped the link and killed the child, and root removed the files of
the same names in a root-only directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from gateway.wifilog.export import create_export_files, manifest_path
from tests.gateway.secret_files import GATEWAY_USER, data_dir, needs_root, run_as

__all__ = ["data_dir"]  # the fixture


def test_a_link_in_the_path_swapped_after_the_files_were_made_leaves_the_new_target_alone(tmp_path: Path) -> None:
    made_in, elsewhere = tmp_path / "exports-real", tmp_path / "root-only"
    made_in.mkdir()
    elsewhere.mkdir()
    link = tmp_path / "exports"
    link.symlink_to(made_in)
    files = create_export_files(link / "e4.csv")
    theirs = [elsewhere / "e4.csv", elsewhere / "e4.csv.manifest.json"]
    for path in theirs:
        path.write_text("root's own")
    link.unlink()
    link.symlink_to(elsewhere)  # swapped while the child ran
    files.discard()
    assert [p.read_text() for p in theirs] == ["root's own"] * 2
    assert sorted(p.name for p in made_in.iterdir()) == []  # what was made, removed where it was made


def test_a_name_replaced_by_another_file_is_not_removed(tmp_path: Path) -> None:
    files = create_export_files(tmp_path / "e5.csv")
    (tmp_path / "e5.csv").unlink()
    (tmp_path / "e5.csv").write_text("someone else's")
    files.discard()
    assert (tmp_path / "e5.csv").read_text() == "someone else's"
    assert not manifest_path(tmp_path / "e5.csv").exists()


def test_written_files_stay_and_the_directory_is_let_go(tmp_path: Path) -> None:
    files = create_export_files(tmp_path / "e6.csv")
    files.write(b"csv", b"{}")
    files.discard()  # after write: nothing left to remove, nothing removed
    assert (tmp_path / "e6.csv").read_bytes() == b"csv"
    assert manifest_path(tmp_path / "e6.csv").read_bytes() == b"{}"


@needs_root
def test_an_export_goes_into_a_write_only_drop_directory(data_dir: Path) -> None:
    """Making a file never needed read permission on its directory: the first held-directory version opened it
    for reading and refused a 0333 drop box (a review, as a user without root's override)."""
    drop = data_dir / "drop"
    drop.mkdir(mode=0o333)
    os.chown(drop, GATEWAY_USER, GATEWAY_USER)
    drop.chmod(0o333)
    done = run_as(
        GATEWAY_USER,
        data_dir,
        """
        from gateway.wifilog.export import create_export_files
        files = create_export_files(data / "drop" / "e7.csv")
        files.write(b"csv", b"{}")
        print("made")
        """,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "made\n", "")
    assert (drop / "e7.csv").read_bytes() == b"csv"
