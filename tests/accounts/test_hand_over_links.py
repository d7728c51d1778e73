"""Root's `hand_over` gives back what it made in the gateway's user's state directory and nothing else: a directory
that user swaps for a symbolic link while root walks the tree is never followed (review s20, hand_over race: a
root-owned 0600 file outside the tree was handed to uid 65534).

The gateway's user is uid 65534, its moves are made with real renames and links; the race is made deterministic
by making that move the moment root has listed a directory (a wrapper around os.scandir, which both a walk by path
and one by descriptor list through).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.accounts.cli import hand_over

NOBODY = 65534  # the gateway's user
KEY = "secrets.key"
OTHER = 1234  # neither root nor the gateway's user
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="handing files to another user needs root")


class _Listed(list[Any]):
    """A listing already read, usable as os.scandir's result is (`with … as it`)."""

    def __enter__(self) -> _Listed:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def close(self) -> None:
        return None


@pytest.fixture
def box(tmp_path: Path) -> tuple[Path, Path]:
    """(the web state directory in a data directory the gateway's user owns, a root-only directory beside it
    holding a root-only file named as the one the state directory's `secrets/` holds: the link's target)."""
    data, victim = tmp_path / "data", tmp_path / "victim"
    (data / "web").mkdir(parents=True, mode=0o700)
    os.chown(data, NOBODY, NOBODY)
    victim.mkdir(mode=0o700)
    (victim / KEY).write_text("root's\n")
    (victim / KEY).chmod(0o600)
    return data / "web", victim


def when_listed(monkeypatch: pytest.MonkeyPatch, directory: Path, move: Callable[[], None]) -> list[Path]:
    """`move` made once, right after root has read the listing of `directory` and before it acts on it; the list
    returned gets `directory` when that happened."""
    listed = directory.stat()
    real = os.scandir
    done: list[Path] = []

    def scandir(target: Any = ".") -> _Listed:
        with real(target) as it:
            entries = _Listed(it)
        here = os.fstat(target) if isinstance(target, int) else os.stat(target)
        if not done and os.path.samestat(here, listed):
            move()
            done.append(directory)
        return entries

    monkeypatch.setattr(os, "scandir", scandir)
    return done


def link_instead(directory: Path, target: Path) -> Callable[[], None]:
    """The gateway's user's move: `directory` renamed to `<name>.old`, a link of its own to `target` in its place."""

    def move() -> None:
        directory.rename(directory.with_name(directory.name + ".old"))
        directory.symlink_to(target)
        os.chown(directory, NOBODY, NOBODY, follow_symlinks=False)

    return move


def owners(top: Path) -> dict[str, int]:
    return {str(p.relative_to(top)): p.lstat().st_uid for p in sorted(top.rglob("*"))}


def assert_untouched(victim: Path) -> None:
    st = (victim / KEY).stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o600)
    assert victim.stat().st_uid == 0


def test_a_subdirectory_swapped_for_a_link_after_root_listed_it_gives_away_nothing_behind_the_link(
    box: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    web, victim = box
    secrets = web / "secrets"  # root made it (SecretStore), the gateway's user may still rename it
    secrets.mkdir(mode=0o700)
    (secrets / KEY).write_text("k")
    swapped = when_listed(monkeypatch, secrets, link_instead(secrets, victim))
    hand_over(web)
    assert swapped == [secrets]
    assert_untouched(victim)
    # what root listed is what it hands over, under the name it has now
    assert owners(web) == {"secrets": NOBODY, "secrets.old": NOBODY, "secrets.old/secrets.key": NOBODY}


def test_a_subdirectory_swapped_for_a_link_before_the_walk_reaches_it_is_skipped_with_one_debug_line(
    box: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    web, victim = box
    secrets = web / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / KEY).write_text("k")
    (web / "audit.db").write_text("")
    swapped = when_listed(monkeypatch, web, link_instead(secrets, victim))
    with caplog.at_level(logging.DEBUG, logger="gateway"):
        hand_over(web)
    assert swapped == [web]
    assert_untouched(victim)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, f"hand over: {secrets} was replaced while walking (now a link, a file or nothing), skipped")
    ]
    # the rest is handed over all the same; the moved directory is the next run's
    assert owners(web)["audit.db"] == NOBODY
    assert web.stat().st_uid == NOBODY


def test_a_state_directory_that_is_a_link_is_not_followed(
    box: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    web, victim = box
    web.rmdir()
    web.symlink_to(victim)
    os.chown(web, NOBODY, NOBODY, follow_symlinks=False)
    with caplog.at_level(logging.DEBUG, logger="gateway"):
        hand_over(web)
    assert_untouched(victim)
    assert [r.getMessage() for r in caplog.records] == [f"hand over: {web} is not a directory (a link?), left as it is"]


def test_every_file_root_made_is_handed_to_the_owner_of_the_parent_and_nothing_else(box: tuple[Path, Path]) -> None:
    web, victim = box
    for name in ("accounts.db", "accounts.db-wal", "audit.db", "audit.head", "secrets/secrets.key", "a/b/c/deep"):
        (web / name).parent.mkdir(parents=True, exist_ok=True)
        (web / name).write_text("")
        (web / name).chmod(0o600)
    (web / "theirs").write_text("")
    os.chown(web / "theirs", OTHER, OTHER)
    (web / "to-victim").symlink_to(victim / KEY)
    hand_over(web)
    assert (web / "to-victim").readlink() == victim / KEY
    assert {k: v for k, v in owners(web).items() if k != "to-victim"} == {
        **dict.fromkeys(("a", "a/b", "a/b/c", "a/b/c/deep", "accounts.db", "accounts.db-wal", "audit.db"), NOBODY),
        **dict.fromkeys(("audit.head", "secrets", "secrets/secrets.key"), NOBODY),
        "theirs": OTHER,
    }
    assert {p.stat().st_gid for p in web.rglob("*") if p.name not in ("theirs", "to-victim")} == {NOBODY}
    assert web.stat().st_uid == NOBODY
    assert (web / "audit.head").stat().st_mode & 0o777 == 0o600  # owners change, modes do not
    assert_untouched(victim)


def test_a_state_directory_whose_parent_is_roots_stays_roots(tmp_path: Path) -> None:
    web = tmp_path / "web"
    (web / "secrets").mkdir(parents=True)
    (web / "audit.db").write_text("")
    hand_over(web)
    assert set(owners(web).values()) == {0}


def test_a_missing_state_directory_is_no_error(box: tuple[Path, Path]) -> None:
    web, _ = box
    web.rmdir()
    hand_over(web)
    assert not web.exists()


def test_a_tree_deeper_than_the_walk_goes_is_left_and_raises_nothing(
    box: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    # the gateway makes two levels; a tree the gateway's user built deep must not crash a server's audit append
    web, _ = box
    fd = os.open(web, os.O_RDONLY)
    for _ in range(1200):  # os.makedirs recurses once per level, past Python's limit
        os.mkdir("d", dir_fd=fd)
        fd, parent = os.open("d", os.O_RDONLY, dir_fd=fd), fd
        os.close(parent)
    os.close(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    os.close(fd)
    deepest = web.joinpath(*["d"] * 1200)
    try:
        with caplog.at_level(logging.DEBUG, logger="gateway"):
            hand_over(web)
        assert web.joinpath(*["d"] * 32).stat().st_uid == NOBODY
        assert web.joinpath(*["d"] * 33).stat().st_uid == 0
        assert (deepest / "f").stat().st_uid == 0
        assert [r.getMessage() for r in caplog.records] == [
            f"hand over: {web.joinpath(*['d'] * 33)} is deeper than 32 levels, left as it is"
        ]
    finally:
        # pytest's own clean-up of old temporary trees (shutil.rmtree) recurses once per level too
        subprocess.run(["rm", "-rf", "--", str(web / "d")], check=True)


def test_a_hard_link_to_a_file_of_roots_elsewhere_is_not_handed_over(box: tuple[Path, Path]) -> None:
    """A second name for a root-owned file outside the tree (made in the state directory while root may make one:
    protected_hardlinks off, or a file the gateway's user may write) stays root's: chowning the name would give
    away the file."""
    state, victim = box
    os.link(victim / KEY, state / "looks-like-ours.db")
    (state / "made-by-root.db").write_text("root made this here\n")
    hand_over(state)
    assert (victim / KEY).stat().st_uid == 0
    assert (state / "made-by-root.db").stat().st_uid == NOBODY  # what root made there still goes back
