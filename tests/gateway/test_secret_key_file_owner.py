"""Files of the secret store that root makes (`sudo edgegw secret set`, `sudo edgegw pseudonym rotate` on a new box)
are the gateway's from the moment they appear under their name: `create_whole` gives the file away before linking it.

Before, the key file and the lock file were made root's and given to the gateway's user afterwards: root killed in
between (a power cut, ^C twice, the OOM killer) left a root-owned 0600 file, and the gateway could read no secret
after its next restart. The gateway's user is played by uid 65534, with a real switch of user (setpriv) in a
process of its own; the kill is a real SIGKILL, at the first audit event after the file appears.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from gateway.storage.files import create_whole
from tests.gateway.secret_files import GATEWAY_USER, data_dir, needs_root, owner, run_as

__all__ = ["data_dir"]  # the fixture, shared with the other file tests
pytestmark = needs_root


def test_create_whole_gives_the_new_file_to_the_owner(data_dir: Path) -> None:
    create_whole(data_dir / "k", b"key-1", owner=(GATEWAY_USER, GATEWAY_USER))
    assert owner(data_dir / "k") == (GATEWAY_USER, GATEWAY_USER, 0o600)
    assert (data_dir / "k").read_bytes() == b"key-1"


def test_create_whole_leaves_a_file_already_there_as_it_is(data_dir: Path) -> None:
    (data_dir / "k").write_bytes(b"key-0")  # root's, as another process made it first
    create_whole(data_dir / "k", b"key-1", owner=(GATEWAY_USER, GATEWAY_USER))
    assert owner(data_dir / "k") == (0, 0, 0o644)
    assert (data_dir / "k").read_bytes() == b"key-0"
    assert sorted(p.name for p in data_dir.iterdir()) == ["k"]  # its own file is not left behind


# SIGKILL at the first audit event after `name` appears in the data directory: any later step (a chown, the
# unlink of the temporary file, the next file) never runs
KILLED_AFTER = """
import os, signal
target = data / {name!r}
def kill_once_there(event, args):
    if event != "os.kill" and os.path.lexists(target):  # os.kill is audited too
        os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(kill_once_there)
SecretStore(data).set("uplink.password", "s3cret-pw")
os.listdir(data)  # an audit event at the end: under root the store's last step (an fsync by descriptor) has none
"""


@pytest.mark.parametrize("name", ["secrets.lock", "secrets.key", "secrets.enc"])
def test_root_killed_right_after_a_file_appears_leaves_the_gateway_able_to_use_its_store(
    data_dir: Path, name: str
) -> None:
    killed = run_as(None, data_dir, KILLED_AFTER.format(name=name))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert owner(data_dir / name)[:2] == (GATEWAY_USER, GATEWAY_USER)
    # the gateway restarts and adds a secret of its own: lock, key and store all usable by it
    gateway = run_as(GATEWAY_USER, data_dir, 'store = SecretStore(data)\nstore.set("b", "2")\nprint(store.names())')
    assert gateway.returncode == 0, gateway.stderr
    written = name == "secrets.enc"  # only then was root's secret durable before the kill
    assert gateway.stdout == ("['b', 'uplink.password']\n" if written else "['b']\n")
