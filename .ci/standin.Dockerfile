# A stand-in for python:3.11-slim where Docker Hub cannot be reached (.ci/compose-test): Debian
# bookworm's python3 3.11 with venv and pip, `python` and `pip` on PATH as in the real image, and
# the host's extra CA certificates trusted (closed networks re-sign HTTPS to the registries).
ARG BASE
FROM ${BASE}
COPY certs/ /usr/local/share/ca-certificates/
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates \
    && update-ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /usr/local/python
LABEL org.nodule-search.stand-in=true
ENV PATH=/usr/local/python/bin:$PATH LANG=C.UTF-8 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
