# Stand-in for python:3.11-slim-bookworm: Debian's own Python 3.11 with venv, `python` on PATH.
ARG DEBIAN=mlpoc-standin/debian:bookworm
FROM ${DEBIAN}
COPY ca/ /usr/local/share/ca-certificates/
RUN apt-get update \
 && apt-get install --yes --no-install-recommends ca-certificates python3 python3-venv \
 && update-ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/log/* \
 && ln -s /usr/bin/python3 /usr/local/bin/python
# pip before 24.2 (the one a new venv starts with) trusts only its own bundle: point it at the
# system's, which holds this machine's certificates
ENV LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
