"""Root's run of the audit log (`sudo edgegw web`, `sudo edgegw user …`) and its secret store in the state directory
the gateway's user owns: a link that user puts at the store's directory or files has root make, read or write nothing
where it leads; a link only root may change (an admin's layout) is followed.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from gateway.audit.log import AuditError, AuditLog
from gateway.errors import ConfigError
from gateway.secret_key_file import open_regular
from gateway.secrets import SecretStore

SERVICE_USER = (4321, 4322)
T0 = 1_796_000_000.0
FIX = "if you did not put it there, find who did; move it aside and run the command again"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attack is on root's run (as in CI)")


@pytest.fixture
def box(tmp_path: Path) -> tuple[Path, Path]:
    """(the web state directory, a root directory standing for /etc/sudoers.d): data/ and data/web/ the service
    user's."""
    data = tmp_path / "data"
    web = data / "web"
    web.mkdir(parents=True)
    for p in (data, web):
        os.chown(p, *SERVICE_USER)
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o755)
    (victim / "keep").write_text("x")
    return web, victim


def append(audit: AuditLog) -> int:
    return audit.append(actor="web", action="login.failed", target="taro", address="192.0.2.10", at=T0)


def test_a_secrets_directory_that_is_the_users_link_is_refused_and_nothing_is_made_where_it_leads(
    box: tuple[Path, Path],
) -> None:
    web, victim = box
    (web / "secrets").symlink_to(victim)
    os.lchown(web / "secrets", *SERVICE_USER)
    with pytest.raises(ConfigError) as caught:
        append(AuditLog(web))
    assert caught.value.errors == [
        f"{web / 'secrets'}: not the secret store's directory, got a symbolic link to {victim}; root follows no link "
        f"nor uses another file's name in {web}, which uid {SERVICE_USER[0]} may change, and nothing was read or "
        "written through it: if the link is yours, name the directory it leads to in the config instead; if not, "
        "find who put it there, remove it and run the command again"
    ]
    assert sorted(p.name for p in victim.iterdir()) == ["keep"]


@pytest.mark.parametrize("name", ["secrets.lock", "secrets.key"])
def test_a_store_file_that_is_the_users_link_is_refused_and_its_target_never_made(
    box: tuple[Path, Path], name: str
) -> None:
    web, victim = box
    store_dir = web / "secrets"
    store_dir.mkdir()
    os.chown(store_dir, *SERVICE_USER)
    target = victim / "sudoers"
    (store_dir / name).symlink_to(target)
    what = "not the store's lock file" if name == "secrets.lock" else "not a secret store key"
    with pytest.raises(ConfigError) as caught:
        SecretStore(store_dir).set("a", "1")
    assert caught.value.errors[0].startswith(
        f"{store_dir / name}: {what}, got a symbolic link to {target}; root follows no link nor uses another file's "
        f"name in {store_dir}, which uid {SERVICE_USER[0]} may change, and nothing was read or written through it: "
    )
    assert sorted(p.name for p in victim.iterdir()) == ["keep"]


def test_a_named_pipe_at_the_lock_is_refused_at_once_not_waited_on(box: tuple[Path, Path]) -> None:
    web, _ = box
    store_dir = web / "secrets"
    store_dir.mkdir()
    os.chown(store_dir, *SERVICE_USER)
    os.mkfifo(store_dir / "secrets.lock")
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            SecretStore(store_dir).set("a", "1")
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "root's run hangs on a named pipe"
    assert len(outcome) == 1 and isinstance(outcome[0], ConfigError)
    assert str(outcome[0]).startswith(f"{store_dir / 'secrets.lock'}: not the store's lock file, got a named pipe;")
    assert FIX in str(outcome[0])


def test_a_store_root_writes_in_the_users_directory_is_the_users_and_reads_back(box: tuple[Path, Path]) -> None:
    # guard: the held directory's owner is the one every file is given, as the path's was
    web, _ = box
    audit = AuditLog(web)
    append(audit)
    store_dir = web / "secrets"
    owners = {p.name: (p.stat().st_uid, p.stat().st_gid) for p in store_dir.iterdir()}
    assert owners == dict.fromkeys(("secrets.enc", "secrets.key", "secrets.lock"), (0, 0))  # root made the directory
    os.chown(store_dir, *SERVICE_USER)
    for p in store_dir.iterdir():
        os.chown(p, *SERVICE_USER)
    SecretStore(store_dir).set("b", "2")
    assert {(p.stat().st_uid, p.stat().st_gid) for p in store_dir.iterdir()} == {SERVICE_USER}
    assert stat.S_IMODE((store_dir / "secrets.enc").stat().st_mode) == 0o600
    assert sorted(SecretStore(store_dir).names()) == ["audit-hmac", "b"]
    assert audit.verify().ok


def test_an_admins_link_only_root_may_change_is_followed(tmp_path: Path) -> None:
    """/etc/edgegw/web -> /srv/edgegw-web: the link's directory is root's 0755, the target the gateway's user's."""
    target = tmp_path / "srv" / "edgegw-web"
    target.mkdir(parents=True)
    os.chown(target, *SERVICE_USER)
    admin = tmp_path / "admin"
    admin.mkdir(mode=0o755)
    (admin / "web").symlink_to(target)
    audit = AuditLog(admin / "web")
    append(audit)
    assert audit.verify().ok and audit.count() == 1
    assert (target / "audit.db").is_file() and (target / "secrets" / "secrets.key").is_file()


def test_a_state_directory_link_the_users_directory_holds_is_refused_saying_who_may_change_it(
    box: tuple[Path, Path],
) -> None:
    web, victim = box
    web.rmdir()
    web.symlink_to(victim)
    with pytest.raises(AuditError) as caught:
        AuditLog(web)
    assert str(caught.value) == (
        f"audit log {web}: must be a directory, got a symbolic link to {victim}; root follows a link only where no "
        f"one else may change it, and uid {SERVICE_USER[0]} may change {web.parent}: nothing was written through it: "
        "if the link is yours, name the directory it leads to as [web] state_dir in the config; if not, find who put "
        "it there, remove it and run the command again"
    )
    assert sorted(p.name for p in victim.iterdir()) == ["keep"]


def test_a_store_directory_swapped_for_a_link_after_it_was_held_is_not_read_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression of review 4: in a root-only store directory (what `sudo edgegw secret set` makes on a fresh box,
    inside the service user's state directory) the key and the store were opened by path, so the user could swap
    the directory's name for a link after root held it, and root read another root-only store's key and secrets.
    The swap is made at the moment of the open (a race the review won 497 times in 8 s)."""
    import gateway.secrets as secrets_module

    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, *SERVICE_USER)
    SecretStore(state / "secrets").set("uplink_password", "real")  # root's directory, root's files
    elsewhere = tmp_path / "etc_other"
    elsewhere.mkdir(mode=0o700)
    SecretStore(elsewhere).set("other_service_token", "ROOT-ONLY-VALUE")

    def swapped_first(path: Path, *args: object, **kwargs: object) -> int:
        if not (state / "secrets").is_symlink():
            os.rename(state / "secrets", state / "moved")
            os.symlink(elsewhere, state / "secrets")
            os.lchown(state / "secrets", *SERVICE_USER)
        return open_regular(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(secrets_module, "open_regular", swapped_first)
    assert SecretStore(state / "secrets").get("uplink_password") == "real"  # read from the directory it held
    with pytest.raises(ConfigError):
        SecretStore(state / "secrets").get("other_service_token")  # refused now: the name is the user's link
