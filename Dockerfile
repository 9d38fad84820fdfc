# syntax=docker/dockerfile:1.7
# Portcullis container image: build with cargo in a Rust image, run from distroless as non-root.
#
#   docker build -t portcullis --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
#
# Ports: 8080 HTTP, 8443 HTTPS, 9090 admin (/healthz, /readyz, /metrics). Unprivileged ports:
# no capability is needed; the chart's Service maps 80/443 onto them.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target directory between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin portcullis \
    && install -D -m 0755 target/release/portcullis /out/portcullis

# glibc, libgcc and CA certificates, no shell, no package manager; user 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="portcullis" \
      org.opencontainers.image.description="A Kubernetes Ingress controller with an embedded hyper + rustls reverse proxy" \
      org.opencontainers.image.source="https://github.com/portcullis-dev/portcullis" \
      org.opencontainers.image.url="https://github.com/portcullis-dev/portcullis" \
      org.opencontainers.image.documentation="https://github.com/portcullis-dev/portcullis/blob/main/docs/install.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="portcullis-dev" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/portcullis /usr/local/bin/portcullis
USER 65532:65532
EXPOSE 8080 8443 9090
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve"]
