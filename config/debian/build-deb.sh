#!/bin/bash
# Builds edgegw_<version>-1_<arch>.deb: the application and its Python dependencies in their own
# environment under /opt/edgegw/.venv (the path the units and the git install use), built from the
# wheel so it carries exactly what a release carries (firmware profiles and templates as package data).
# Usage: config/debian/build-deb.sh [OUT_DIR]   (make deb). Needs python3.11 with venv and -dev, gcc,
# binutils, dpkg-deb, fakeroot. DEB_MAINTAINER="Name <address>" sets the Maintainer field (the
# integrator who answers for the boxes); lintian checks the result (tests/packaging/test_lintian.py).
set -euo pipefail
# The package is built from the wheel alone: a PYTHONPATH naming the checkout (a developer's shell, a test run)
# had pip take edgegw for installed already (the checkout's egg-info) and ship a venv without it, and the man
# page then imported the checkout instead of the package.
unset PYTHONPATH PYTHONHOME PYTHONUSERBASE
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)   # the checkout: this script lives in config/debian/
out=${1:-$src/dist}
python=${DEB_PYTHON:-/usr/bin/python3.11}   # Debian 12's interpreter: the venv links to it on the box
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$src/gateway/__init__.py")
revision=${DEB_REVISION:-1}
arch=$(dpkg --print-architecture)   # pydantic-core, orjson, cryptography ship compiled code
work=$(mktemp -d "${TMPDIR:-/tmp}/edgegw-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
venv=/opt/edgegw/.venv
maintainer=${DEB_MAINTAINER:-edgegw maintainers <edgegw@example.invalid>}
# pip's cache of wheels it built from source (evdev has no binary wheel) is keyed by the Python tag
# only: a wheel built by another CPython 3.11 (pyenv's) would be reused, carrying that build's
# RUNPATH. This cache only ever holds wheels built by the package's own interpreter.
export PIP_CACHE_DIR=${EDGEGW_DEB_PIP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edgegw-deb/pip}

echo "building the wheel of edgegw $version"
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$work/wheels" "$src" >"$work/wheel.log" 2>&1 \
  || { cat "$work/wheel.log"; exit 1; }
# The venv is made at its final path inside the package tree, then its scripts' #! lines (the only
# absolute paths a venv writes) are pointed at /opt/edgegw/.venv.
echo "installing it with its dependencies into $venv"
"$python" -m venv --without-pip "$root$venv"
"$python" -m pip --python "$root$venv/bin/python" install --quiet --no-compile --no-warn-script-location \
  "$work"/wheels/edgegw-*.whl >"$work/install.log" 2>&1 || { cat "$work/install.log"; exit 1; }
[ -x "$root$venv/bin/edgegw" ] || { cat "$work/install.log"; echo "build-deb: edgegw is not in the venv" >&2; exit 1; }
grep -rlI --null "^#!$root$venv/bin/python" "$root$venv/bin" | xargs -0 -r sed -i "1s|^#!$root$venv|#!$venv|"
# an appliance's environment is run, never activated; the cfg's "command" line names the build directory
rm -f "$root$venv"/bin/activate* "$root$venv"/bin/Activate.ps1
sed -i '/^command = /d' "$root$venv/pyvenv.cfg"
rm -f "$root$venv"/lib/python3.11/site-packages/edgegw-*.dist-info/direct_url.json
rmdir "$root$venv/include/python3.11" "$root$venv/include"   # for compiling against the venv: never done on a box
# compiled extensions as Debian ships them (dh_strip): no symbols or build notes, and no search path
# pointing into the build machine
find "$root$venv" -name '*.so' -type f -exec strip --strip-unneeded --remove-section=.comment --remove-section=.note {} +
find "$root$venv" -name '*.so' -type f -exec chmod 0644 {} +
if leaks=$(find "$root$venv" -name '*.so' -type f -exec sh -c 'readelf -d "$1" | grep -q "(R.*PATH)" && echo "$1"' _ {} \;) \
  && [ -n "$leaks" ]; then
  echo "build-deb: compiled extensions with an RPATH/RUNPATH from the build machine, got:" >&2
  echo "$leaks" >&2
  echo "build-deb: clear $PIP_CACHE_DIR and build again (they were built by another interpreter)" >&2
  exit 1
fi
# bytecode compiled now, with the final paths: nothing is written under /opt at run time, and dpkg
# owns every file it will remove
"$python" -m compileall -q -j0 -d "$venv/lib" "$root$venv/lib" >/dev/null

install -d -m 0755 "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/edgegw" "$root/usr/share/doc/edgegw" \
  "$root/usr/share/edgegw/supervisor" "$root/usr/share/man/man1" "$root/usr/share/lintian/overrides"
ln -s "$venv/bin/edgegw" "$root/usr/bin/edgegw"
install -m 0640 "$src/config/gateway.example.toml" "$root/etc/edgegw/gateway.toml"
install -m 0644 "$src"/systemd/*.service "$src"/systemd/*.timer "$root/lib/systemd/system/"
install -m 0644 "$src/systemd/supervisor-edgegw.conf" "$root/usr/share/edgegw/supervisor/edgegw.conf"
install -m 0644 "$src/README.md" "$root/usr/share/doc/edgegw/README.md"
install -m 0644 "$here/copyright" "$root/usr/share/doc/edgegw/copyright"
install -m 0644 "$here/lintian-overrides" "$root/usr/share/lintian/overrides/edgegw"
# the manual page lists the commands of the very CLI inside the package
PYTHONDONTWRITEBYTECODE=1 "$root$venv/bin/python" "$here/manpage.py" "$version" | gzip -9n >"$root/usr/share/man/man1/edgegw.1.gz"
printf 'edgegw (%s-%s) stable; urgency=medium\n\n  * Release %s.\n\n -- %s  %s\n' \
  "$version" "$revision" "$version" "$maintainer" "$(date -R -d @"${SOURCE_DATE_EPOCH:-$(git -C "$src" log -1 --format=%ct 2>/dev/null || date +%s)}")" \
  | gzip -9n >"$root/usr/share/doc/edgegw/changelog.Debian.gz"

install -d -m 0755 "$root/DEBIAN"
for f in preinst postinst prerm postrm; do
  sed "s/@VERSION@/$version-$revision/g" "$here/$f" >"$root/DEBIAN/$f"
  chmod 0755 "$root/DEBIAN/$f"
done
install -m 0644 "$here/conffiles" "$root/DEBIAN/conffiles"
# what debsums and `dpkg --verify` check an installed box against
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) \
  >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version-$revision/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
  -e "s|@MAINTAINER@|$maintainer|" "$here/control" >"$root/DEBIAN/control"
mkdir -p "$out"
deb="$out/edgegw_${version}-${revision}_${arch}.deb"
fakeroot dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
