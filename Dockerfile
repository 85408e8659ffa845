# syntax=docker/dockerfile:1
# Switchboard node image: a release build on the Swift image, run on Debian slim with only the C
# libraries the binary links (hiredis, libcrypto, libsystemd) and a non-root user.
#
#   docker build -t switchboard .
#   docker run --rm -p 8080:8080 -e WEBUI_SECRET_KEY=… switchboard
#   docker run --rm switchboard check-config --redis-url redis://redis:6379/0
#
# Build and runtime stages are both Debian 12 (bookworm), so the shared libraries match.
# Checked by Tests/Live/test_deploy.py (stages, packages, user, the CMD's flags).

ARG SWIFT_VERSION=6.3

# ---- build ------------------------------------------------------------------------------------
FROM swift:${SWIFT_VERSION}-bookworm AS build
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update \
    && apt-get install -y --no-install-recommends libhiredis-dev libssl-dev libsystemd-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first: this layer is reused while only the sources change. Package.resolved is
# not committed; the glob copies it when a checkout has one.
COPY Package.swift Package.resolved* ./
RUN swift package resolve
COPY Sources ./Sources
# The manifest declares the test targets too, so their directories must exist.
COPY Tests ./Tests
RUN swift build -c release --product switchboard --static-swift-stdlib \
    && install -D -m 0755 "$(swift build -c release --show-bin-path)/switchboard" /out/switchboard

# ---- runtime ----------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update \
    && apt-get install -y --no-install-recommends libhiredis0.14 libssl3 libsystemd0 libstdc++6 zlib1g ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 switchboard \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin switchboard
COPY --from=build /out/switchboard /usr/local/bin/switchboard
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
# The image carries no HTTP client: bash's /dev/tcp asks the node's /health (200 while alive), on
# 8080 or on SWITCHBOARD_PORT for a command that takes its port from there. Orchestrators use
# their own probes instead: /ready for routing, /health for liveness (docker-compose.yml,
# deploy/kubernetes/).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${SWITCHBOARD_PORT:-8080} && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["switchboard"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
