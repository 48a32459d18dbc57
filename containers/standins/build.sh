#!/usr/bin/env bash
# Stand-ins for the kit's base images, built from Debian's packages, for machines that reach
# Debian's mirror and PyPI but no image registry (the kit's own CI machines). Idempotent and
# cached: an image that already exists is left alone, so a second run does nothing.
#
#   mlpoc-standin/debian:bookworm     debootstrap --variant=minbase bookworm, docker import
#   mlpoc-standin/python:3.11         Debian's python3 (3.11) + venv, as `python` on PATH
#   mlpoc-standin/nginx:bookworm      Debian's nginx, laid out like the official nginx image
#                                     (user nginx, /etc/nginx/templates rendered at start)
#
# The real images (containers/Dockerfile's defaults, the compose file's proxy) are used
# wherever a registry answers; `make images` picks. This machine's extra CA certificates
# (/usr/local/share/ca-certificates) go into the stand-ins, so pip inside a build trusts what
# the host trusts; the real bases need none.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
DEBIAN=mlpoc-standin/debian:bookworm
PYTHON=mlpoc-standin/python:3.11
NGINX=mlpoc-standin/nginx:bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DOCKER="$("$here/../engine.sh" client)"

have() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

if ! have "$DEBIAN"; then
    command -v debootstrap >/dev/null || {
        echo "stand-ins: debootstrap is missing (apt-get install debootstrap)" >&2; exit 2; }
    root="$(mktemp -d)"
    trap 'rm -rf "$root"' EXIT
    echo "stand-ins: debootstrap bookworm (minbase) from $MIRROR"
    debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$root.log" 2>&1 || {
        tail -20 "$root.log" >&2; exit 1; }
    rm -f "$root.log"
    # apt inside the image uses the same mirror; no caches or logs in the layer
    echo "deb $MIRROR bookworm main" >"$root/etc/apt/sources.list"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*
    tar -C "$root" -c . | "$DOCKER" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' - "$DEBIAN" >/dev/null
    rm -rf "$root"
    trap - EXIT
fi

# the host's extra certificates, copied into a context of its own
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$here"/*.Dockerfile "$here"/nginx-entrypoint.sh "$here"/nginx.conf "$context"/
mkdir -p "$context/ca"
cp /usr/local/share/ca-certificates/*.crt "$context/ca/" 2>/dev/null || true

build() {  # image, dockerfile
    have "$1" && return 0
    echo "stand-ins: building $1"
    DOCKER_BUILDKIT=1 "$DOCKER" build --quiet --network host --build-arg "DEBIAN=$DEBIAN" \
        -t "$1" -f "$context/$2" "$context" >/dev/null
}
build "$PYTHON" python.Dockerfile
build "$NGINX" nginx.Dockerfile
echo "stand-ins: $DEBIAN $PYTHON $NGINX"
