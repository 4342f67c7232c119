#!/usr/bin/env bash
# Lays out the container image's whole file system in ROOTFS from a release BINARY: the
# one definition of what the image holds, used by the Dockerfile's build stage and by
# scripts/image.sh (the daemonless build), so both produce the same files.
#
#   /usr/local/bin/siemflow          the binary, stripped of its symbol table too (the
#                                    release profile already drops the line tables)
#   /lib..., /usr/lib/...            the shared libraries `ldd` lists (glibc, libgcc_s,
#                                    zlib), at the paths the binary looks them up
#   /etc/ssl/certs/ca-certificates.crt  the system CA bundle: TLS trusts the OS roots
#   /etc/passwd, /etc/group          root and siemflow (65532), the user it runs as
#   /etc/nsswitch.conf               hosts from /etc/hosts, then DNS
#   /etc/siemflow/pipeline.toml      the default pipeline (the built-in simulator)
#   /var/lib/siemflow                data_dir, owned by 65532 (a volume in Kubernetes)
#   /tmp                             1777
#
# Usage: assemble-rootfs.sh BINARY PIPELINE ROOTFS
set -euo pipefail
binary=$1 pipeline=$2 rootfs=$3
uid=65532

rm -rf "$rootfs"
mkdir -p "$rootfs"/{usr/local/bin,etc/ssl/certs,etc/siemflow,var/lib/siemflow,tmp}

install -m 0755 "$binary" "$rootfs/usr/local/bin/siemflow"
strip --strip-all "$rootfs/usr/local/bin/siemflow"

# The libraries the dynamic linker will load, and the linker itself, at their paths.
ldd "$binary" | awk '/=> \// { print $3 } /^[ \t]*\// { print $1 }' | sort -u |
while read -r library; do
    mkdir -p "$rootfs$(dirname "$library")"
    cp -L "$library" "$rootfs$library"
done
# /lib and /lib64 are links into /usr on Debian (merged /usr): keep that shape.
for link in lib lib64; do
    if [ -L "/$link" ] && [ -d "$rootfs/$link" ]; then
        mkdir -p "$rootfs/usr/$link"
        cp -a "$rootfs/$link/." "$rootfs/usr/$link/"
        rm -rf "${rootfs:?}/$link"
        ln -s "usr/$link" "$rootfs/$link"
    fi
done

cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
cat > "$rootfs/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/sbin/nologin
siemflow:x:$uid:$uid:siemflow:/var/lib/siemflow:/sbin/nologin
PASSWD
cat > "$rootfs/etc/group" <<GROUP
root:x:0:
siemflow:x:$uid:
GROUP
echo "hosts: files dns" > "$rootfs/etc/nsswitch.conf"
install -m 0644 "$pipeline" "$rootfs/etc/siemflow/pipeline.toml"

chown "$uid:$uid" "$rootfs/var/lib/siemflow"
chmod 0755 "$rootfs/var/lib/siemflow"
chmod 1777 "$rootfs/tmp"
