"""`make deb`'s package installed with the real dpkg into a throwaway root: files, user, permissions, remove, purge, upgrade, downgrade.

Slow (the package is built once per run, ~1 min, conftest.py): e2e. Needs root and mount namespaces (see throwaway_root.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .installed import add_data_and_a_local_edit, check_installed, check_purged, check_removed, repack
from .throwaway_root import Root, usable

WHY_NOT = usable()
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(WHY_NOT is not None, reason=f"no throwaway root here: {WHY_NOT}")]


@pytest.fixture
def root(tmp_path: Path) -> Root:
    return Root(tmp_path)


def test_install_checks_files_user_permissions_then_remove_keeps_data_and_purge_deletes_it(
    deb: Path, root: Root
) -> None:
    installed = root.dpkg("-i", str(deb))
    assert "edit /etc/edgegw/gateway.toml" not in installed.stdout  # no systemd in the root: nothing started
    check_installed(root)
    add_data_and_a_local_edit(root)
    root.dpkg("-r", "edgegw")
    check_removed(root)
    root.dpkg("-P", "edgegw")
    check_purged(root)


def test_an_upgrade_keeps_data_and_config_and_a_downgrade_is_refused(deb: Path, root: Root, tmp_path: Path) -> None:
    root.dpkg("-i", str(deb))
    root.run("echo pending > $R/var/lib/edgegw/buffer.db && echo '# tuned' >> $R/etc/edgegw/gateway.toml")
    root.dpkg("-i", str(repack(deb, "0.1.1-1", tmp_path)))
    kept = root.run(
        "cat $R/var/lib/edgegw/buffer.db; tail -1 $R/etc/edgegw/gateway.toml;"
        " dpkg-query --admindir=$R/var/lib/dpkg -W -f '${Version}\n' edgegw"
    ).stdout
    assert kept == "pending\n# tuned\n0.1.1-1\n"
    refused = root.dpkg("-i", str(deb), check=False)
    assert refused.returncode != 0
    assert "edgegw: refusing to downgrade from 0.1.1-1 to 0.1.0-1" in refused.stderr
    after = root.run(
        "dpkg-query --admindir=$R/var/lib/dpkg -W -f '${Version} ${Status}\n' edgegw; cat $R/var/lib/edgegw/buffer.db"
    )
    assert after.stdout == "0.1.1-1 install ok installed\npending\n"
