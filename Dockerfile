# syntax=docker/dockerfile:1.7
# node-agent-webhook container image: a locked release build on Debian 12 (bookworm), run on
# distroless cc-debian12 as the numeric non-root user 65532.
#
#   docker build -t node-agent-webhook:latest .
#   docker build --build-arg VERSION=0.1.0 --build-arg VCS_REF="$(git rev-parse HEAD)" \
#                --build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" -t node-agent-webhook:0.1.0 .
#
# Needs BuildKit (the default since Docker Engine 23; DOCKER_BUILDKIT=1 before that) for the
# cache mounts, which keep the cargo registry and target/ between builds.
#
# Why glibc and cc-debian12 rather than a static musl binary on static-debian12: the binary
# links no OpenSSL (rustls with ring; ring's C and assembly are compiled into the binary), so
# its only shared libraries are glibc's libc/libm and libgcc_s (unwinding). distroless
# cc-debian12 ships exactly those, from the same Debian 12 release as the builder, so the
# versions match by construction. A musl build would save the ~2 MB of libraries but needs
# musl-gcc for ring and trades glibc's malloc for musl's, which is markedly slower under a
# multi-threaded tokio runtime: the wrong trade for a server on the API server's request path.

ARG RUST_VERSION=1.95

# ---- build ------------------------------------------------------------------------------------
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
# llvm-profdata of rustc's own LLVM, for the profile-guided build (Debian's is older).
RUN rustup component add llvm-tools
WORKDIR /src
# The build context is allow-listed by .dockerignore: the manifest, the lockfile and the sources.
COPY . .
# hack/pgo/build.sh: the release build, profile-guided (an instrumented build trained on
# hack/pgo's reviews over loopback TLS with curl, then `cargo build --release --locked` with the
# profile; bench/RESULTS.md, issue 25). The image's binary is stripped of symbols (less to pull
# on every node; the logs, not a symbolized backtrace, say what a request was); Cargo.toml's
# release profile keeps them for local profiling.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    CARGO_PROFILE_RELEASE_STRIP=symbols hack/pgo/build.sh \
    && install -D -m 0755 target/release/node-agent-webhook /out/node-agent-webhook

# ---- runtime ----------------------------------------------------------------------------------
# `make image` builds this stage without Docker: hack/image/oci.py reads its instructions (and
# refuses one it does not reproduce), and tests/image.rs compares the result with them.
# Pin by digest for production builds: gcr.io/distroless/cc-debian12:nonroot@sha256:...
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
# The repository URL (e.g. https://github.com/<owner>/node-agent-webhook); empty when unknown.
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="node-agent-webhook" \
      org.opencontainers.image.description="Admission webhooks that validate Velero's node-agent ConfigMap and apply it to data-mover pods" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

# The binary and nothing else (no shell, no package manager in distroless).
COPY --from=builder --chown=0:0 --chmod=0755 /out/node-agent-webhook /usr/local/bin/node-agent-webhook

# Numeric, so the kubelet can enforce runAsNonRoot without reading /etc/passwd.
USER 65532:65532
# 8443: HTTPS /validate and /mutate. 9090: plain HTTP /metrics, /healthz, /readyz.
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/node-agent-webhook"]
CMD ["serve"]
