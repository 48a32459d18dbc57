#!/usr/bin/env bash
# `make images`: build the kit's images with whatever Docker engine answers, and say which.
#
#   mlpoc/worker:local   target worker: the train and predict workers (what ECS runs), with
#                        the model plugins cdk.json's mlpoc:plugins lists
#   mlpoc/api:local      target api: the API (what the Beanstalk bundle runs behind nginx)
#
# Bases: the real ones (containers/Dockerfile's defaults, the compose file's nginx) where a
# registry answers; otherwise the Debian stand-ins of containers/standins/build.sh (built once,
# then cached). MLPOC_BASES=real|standin forces a choice. What was chosen is written to
# .mlpoc/images.json for the container tests, and each image's size is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER="$(containers/engine.sh client)"
# the real bases: the Dockerfile's default and the compose file's (one home each)
PYTHON_REAL="$(sed -n 's/^ARG PYTHON_BASE=//p' containers/Dockerfile)"
NGINX_REAL="$(sed -n 's/.*MLPOC_PROXY_IMAGE:-\([^}]*\)}.*/\1/p' containers/docker-compose.yml)"
OUT=.mlpoc/images.json
# the model plugins the worker image carries, as `cdk deploy` builds it (cdk.json mlpoc:plugins)
PLUGINS="$(python3 -c 'import json; print(" ".join(json.load(open("cdk.json"))["context"]["mlpoc:plugins"]))')"

if ! timeout 10 "$DOCKER" info >/dev/null 2>&1; then
    echo "images: no Docker engine answers (start one; as root: containers/engine.sh start)" >&2
    exit 3
fi

present_or_pulled() {
    "$DOCKER" image inspect "$1" >/dev/null 2>&1 || timeout 300 "$DOCKER" pull -q "$1" >/dev/null 2>&1
}

bases="${MLPOC_BASES:-auto}"
if [ "$bases" = auto ]; then
    if present_or_pulled "$PYTHON_REAL" && present_or_pulled "$NGINX_REAL"; then
        bases=real
    else
        bases=standin
        echo "images: no registry answers: stand-in bases from Debian's packages"
    fi
fi
case "$bases" in
    real) python_base="$PYTHON_REAL"; proxy="$NGINX_REAL";;
    standin)
        containers/standins/build.sh
        python_base=mlpoc-standin/python:3.11; proxy=mlpoc-standin/nginx:bookworm;;
    *) echo "images: MLPOC_BASES must be auto, real or standin, not $bases" >&2; exit 2;;
esac

for target in worker api; do
    start=$(date +%s)
    DOCKER_BUILDKIT=1 "$DOCKER" build --quiet --network host \
        --build-arg "PYTHON_BASE=$python_base" --build-arg "PLUGINS=$PLUGINS" --target "$target" \
        -f containers/Dockerfile -t "mlpoc/$target:local" . >/dev/null
    size=$("$DOCKER" image inspect -f '{{.Size}}' "mlpoc/$target:local")
    printf 'images: mlpoc/%s:local  %d MB  (built in %d s, base %s)\n' \
        "$target" $((size / 1000000)) $(($(date +%s) - start)) "$python_base"
done
mkdir -p "$(dirname "$OUT")"
printf '{"bases": "%s", "docker": "%s", "worker": "mlpoc/worker:local", "api": "mlpoc/api:local", "proxy": "%s", "plugins": "%s"}\n' \
    "$bases" "$DOCKER" "$proxy" "$PLUGINS" >"$OUT"
echo "images: written $OUT"
