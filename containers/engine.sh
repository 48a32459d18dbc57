#!/usr/bin/env bash
# The Docker engine and client the image builds and container tests use.
#
#   containers/engine.sh client   print the docker client that builds with BuildKit: `docker`
#                                 when it has the buildx plugin, else a client with BuildKit
#                                 built in (Debian's docker.io 20.10, /usr/bin/docker)
#   containers/engine.sh check    exit 0 when an engine answers, 1 when none does
#   containers/engine.sh start    make an engine answer: as root, install Debian's docker.io
#                                 and debootstrap when missing, and start
#                                 dockerd when none answers; exit 3 when there is none and this
#                                 user cannot start one
#
# dockerd runs without iptables and without a bridge (as these CI machines allow): containers
# use the host's network, which is what the bundle's compose file asks for anyway.
set -euo pipefail

client() {
    if docker buildx version >/dev/null 2>&1; then echo docker; return; fi
    for candidate in /usr/bin/docker /usr/local/bin/docker; do
        [ -x "$candidate" ] || continue
        case "$("$candidate" version --format '{{.Client.Version}}' 2>/dev/null)" in
            20.*|19.*|18.*) echo "$candidate"; return;;  # BuildKit built into the client
        esac
    done
    echo docker
}

answers() { timeout 10 "$(client)" info >/dev/null 2>&1; }

start() {
    answers && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "engine: no Docker engine answers, and only root may start one here" >&2
        return 3
    fi
    if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
        echo "engine: installing Debian's docker.io and debootstrap"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            docker.io debootstrap >/dev/null
    fi
    if ! answers; then
        mkdir -p /var/log/mlpoc
        echo "engine: starting dockerd (log: /var/log/mlpoc/dockerd.log)"
        nohup dockerd --storage-driver=overlay2 --iptables=false --ip6tables=false \
            --bridge=none >/var/log/mlpoc/dockerd.log 2>&1 &
        for _ in $(seq 1 60); do answers && return 0; sleep 1; done
        echo "engine: dockerd did not answer within 60 s; see /var/log/mlpoc/dockerd.log" >&2
        return 1
    fi
}

case "${1:-}" in
    client) client;;
    check) answers;;
    start) start;;
    *) echo "usage: containers/engine.sh client|check|start" >&2; exit 2;;
esac
