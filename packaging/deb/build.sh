#!/usr/bin/env bash
# Builds edgeblob's .deb from built binaries: the three programs, the systemd units, the hardware
# profiles and a default configuration (a conffile). A package install creates the edgeblob
# system user and enables the units but starts nothing: a node must not come up (and prepare
# must not format) before an operator has written its configuration.
#
#   packaging/deb/build.sh BIN_DIR OUT_DIR      e.g. packaging/deb/build.sh target/release dist
#
# Prints the path of the package it wrote.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin_dir="$(cd "${1:?BIN_DIR}" && pwd)"
mkdir -p "${2:?OUT_DIR}"
out="$(cd "$2" && pwd)"

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)-1"
arch="$(dpkg --print-architecture)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/edgeblob"

install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/edgeblob" \
    "$root/usr/share/edgeblob" "$root/usr/share/doc/edgeblob"
for b in edgeblob edgeblob-admin edgeblob-bench; do
    install -m 0755 "$bin_dir/$b" "$root/usr/bin/$b"
    # Policy: no debugging symbols in a package's binaries.
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/$b"
done
install -m 0644 "$repo"/packaging/systemd/*.service "$root/lib/systemd/system/"
install -m 0644 "$repo/packaging/edgeblob.toml" "$root/etc/edgeblob/edgeblob.toml"
cp -r "$repo/hw-profiles" "$root/usr/share/edgeblob/hw-profiles"
find "$root/usr/share/edgeblob" -type d -exec chmod 0755 {} + && find "$root/usr/share/edgeblob" -type f -exec chmod 0644 {} +
install -m 0644 "$repo/docs/operations.md" "$root/usr/share/doc/edgeblob/operations.md"
install -m 0644 "$here/copyright" "$root/usr/share/doc/edgeblob/copyright"
sed "s/@VERSION@/$version/; s/@DATE@/$(date -R -d @"${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}")/" \
    "$here/changelog" | gzip -9n > "$root/usr/share/doc/edgeblob/changelog.Debian.gz"
chmod 0644 "$root/usr/share/doc/edgeblob/changelog.Debian.gz"
for s in postinst prerm postrm; do
    install -m 0755 "$here/$s" "$root/DEBIAN/$s"
done
echo /etc/edgeblob/edgeblob.toml > "$root/DEBIAN/conffiles"
size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
sed "s/@VERSION@/$version/; s/@ARCH@/$arch/; s/@SIZE@/$size/" "$here/control" > "$root/DEBIAN/control"
deb="$out/edgeblob_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" > /dev/null
echo "$deb"
