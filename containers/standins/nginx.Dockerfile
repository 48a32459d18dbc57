# Stand-in for the official nginx image (public.ecr.aws/docker/library/nginx): Debian's nginx
# with the official image's layout, so the bundle's proxy runs unchanged. Master as root,
# workers as the unprivileged user `nginx` (uid 101, as in the official image); templates in
# /etc/nginx/templates rendered into /etc/nginx/conf.d at start; access and error logs to the
# container's stdout and stderr.
ARG DEBIAN=mlpoc-standin/debian:bookworm
FROM ${DEBIAN}
RUN apt-get update \
 && apt-get install --yes --no-install-recommends nginx gettext-base \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled /etc/nginx/sites-available \
 && groupadd --system --gid 101 nginx \
 && useradd --system --uid 101 --gid nginx --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin nginx \
 && mkdir -p /etc/nginx/templates /docker-entrypoint.d /usr/share/nginx/html \
 && rm -rf /var/log/nginx/* \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log
COPY nginx.conf /etc/nginx/nginx.conf
COPY nginx-entrypoint.sh /docker-entrypoint.sh
ENTRYPOINT ["/docker-entrypoint.sh"]
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
