# syntax=docker/dockerfile:1
# edgeferry's container image: deploy/README.md (Image) says what is in it and why.
# Stages: build (all dependencies, tsc to dist/), deps (production dependencies only, a clean
# install), and the runtime on distroless Node 24 (glibc, no shell, uid 65532).
# The first two run on the build machine's platform even for an arm64 image: no production
# dependency is platform-specific (classic-level and @serialport/bindings-cpp carry prebuilt
# binaries for linux-x64 and linux-arm64 alike), so no emulated npm run is needed.
# test/deploy/runtime-tree.test.ts builds the same tree from this file without Docker and runs
# the daemon from it with the ENTRYPOINT and CMD below.

FROM --platform=$BUILDPLATFORM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
COPY vendor ./vendor
# --ignore-scripts: the dependencies' install scripts are only fallbacks (package.json
# allowScripts says why); the build runs below, once the sources are in.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY src ./src
RUN npm run build

FROM --platform=$BUILDPLATFORM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
COPY vendor ./vendor
# classic-level (LevelDB) and @serialport/bindings-cpp load the prebuilt linux-x64 or
# linux-arm64 glibc binary they ship; nothing is compiled here.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && mkdir -p state

FROM gcr.io/distroless/nodejs24-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="edgeferry" \
      org.opencontainers.image.description="Edge protocol gateway: MQTT, CoAP, Modbus in; durable journal; HTTP, gRPC out" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY protocols ./protocols
COPY deploy/base/edgeferry.yaml /etc/edgeferry/config.yaml
# The journal's volume mount point, writable by the daemon's user when nothing is mounted.
COPY --from=deps --chown=65532:65532 /app/state /var/lib/edgeferry
ENV NODE_ENV=production \
    EDGEFERRY_CONFIG=/etc/edgeferry/config.yaml \
    GLIBC_TUNABLES=glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536:glibc.malloc.trim_threshold=131072
USER 65532:65532
EXPOSE 1883 5683/udp 8080 50051
# Node is PID 1: the daemon handles SIGTERM and SIGINT itself (src/cli.ts), and no child
# outlives it. The node flags are bin/edgeferry.js's shebang's (a test compares them); dist/ is
# run directly because the image holds no src/ for the bin to compare dist/ against.
ENTRYPOINT ["/nodejs/bin/node", "--max-semi-space-size=4", "--heap-growing-percent=20", "/app/dist/cli.js"]
CMD ["run"]
