"""An export's files are removed by name in the directory they were made in, never through the path again.

Under sudo, root makes the files, a child that became the gateway's account fills them, and root removes them
if the child fails (gateway.wifilog.cli). A review found root removing by path: with an --out reaching through a
link the account may change, the account swapped the link and killed the child, and root removed the files of
the same names in a root-only directory.
"""

from __future__ import annotations

from pathlib import Path

from gateway.wifilog.export import create_export_files, manifest_path


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
