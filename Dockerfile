# asktable-feishu-gateway: the static binary and nothing else it does not need.
#
#   make image        # builds target/static/… and target/image-root/, then this file
#   make image-tar    # the same, saved for `docker load -i` on servers without a registry
#
# FROM scratch: no base image to pull (air-gapped build hosts) and nothing to
# patch. What the binary needs besides itself comes from target/image-root/
# (made by .ci/image-root): the CA bundle for Feishu's TLS and
# rediss://, and zoneinfo so that log times honour TZ (e.g. Asia/Shanghai).
FROM scratch

ARG VERSION=0.1.0
ARG SOURCE=https://github.com/datamini/asktable-feishu-gateway
LABEL org.opencontainers.image.title="asktable-feishu-gateway" \
      org.opencontainers.image.description="Connects Feishu/Lark bots (long connection) to AskTable through Redis" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="DataMini"

COPY target/image-root/ /

# /healthz for the HEALTHCHECK (and Prometheus, when published); the
# container's own loopback is enough for the check.
ENV METRICS_ADDR=0.0.0.0:9464 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    TZ=UTC
EXPOSE 9464

# A numeric non-root user: no /etc/passwd needed, nothing runs as root.
USER 65532:65532

# SIGTERM: replies in flight finish, connections close, exit 0 within 10 s.
STOPSIGNAL SIGTERM

# Healthy = the main loop runs, Redis reads and writes work, no Feishu event
# was refused in the last minute (the gateway's /healthz; see `health`).
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/asktable-feishu-gateway", "health"]

ENTRYPOINT ["/usr/local/bin/asktable-feishu-gateway"]
CMD ["run"]
