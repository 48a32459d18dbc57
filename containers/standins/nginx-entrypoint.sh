#!/bin/sh
# The stand-in nginx image's entrypoint, doing what the official image's does for templates:
# when the command is nginx, each /etc/nginx/templates/NAME.template becomes
# /etc/nginx/conf.d/NAME with envsubst, substituting only the variables whose names match the
# regular expression NGINX_ENVSUBST_FILTER (all of them when it is unset), so that nginx's own
# $variables are left alone.
set -eu
if [ "${1:-}" = "nginx" ]; then
    filter="${NGINX_ENVSUBST_FILTER:-.}"
    names="$(env | cut -d= -f1 | grep -E -- "$filter" || true)"
    defined=""
    for name in $names; do defined="$defined \${$name}"; done
    for template in /etc/nginx/templates/*.template; do
        [ -e "$template" ] || continue
        output="/etc/nginx/conf.d/$(basename "$template" .template)"
        envsubst "$defined" <"$template" >"$output"
        echo "$0: rendered $template to $output"
    done
fi
exec "$@"
