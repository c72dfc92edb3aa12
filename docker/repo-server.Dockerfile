# flotilla-repo-server: the binary plus the tools renderers run (git, kustomize, helm), non-root.
#   docker build -f docker/repo-server.Dockerfile -t ghcr.io/flotilla/flotilla-repo-server:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p flotilla-repo-server \
    && install -D target/release/flotilla-repo-server /out/flotilla-repo-server

# Pinned tool releases, checked against the checksums their projects publish.
FROM debian:bookworm-slim AS tools
ARG KUSTOMIZE_VERSION=5.4.3
ARG HELM_VERSION=3.16.4
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /tmp/tools
RUN base="https://github.com/kubernetes-sigs/kustomize/releases/download/kustomize%2Fv${KUSTOMIZE_VERSION}" \
    && file="kustomize_v${KUSTOMIZE_VERSION}_linux_amd64.tar.gz" \
    && curl -fsSLO "$base/$file" && curl -fsSLO "$base/checksums.txt" \
    && grep " $file\$" checksums.txt | sha256sum -c - \
    && tar -xzf "$file" -C /usr/local/bin kustomize \
    && file="helm-v${HELM_VERSION}-linux-amd64.tar.gz" \
    && curl -fsSLO "https://get.helm.sh/$file" && curl -fsSLO "https://get.helm.sh/$file.sha256sum" \
    && sha256sum -c "$file.sha256sum" \
    && tar -xzf "$file" linux-amd64/helm && install linux-amd64/helm /usr/local/bin/helm

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates git openssh-client \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 nonroot && useradd --uid 65532 --gid 65532 --home-dir /tmp --no-create-home nonroot
COPY --from=tools /usr/local/bin/kustomize /usr/local/bin/helm /usr/local/bin/
COPY --from=build /out/flotilla-repo-server /usr/local/bin/flotilla-repo-server
USER 65532:65532
ENV HOME=/tmp HELM_CACHE_HOME=/tmp/helm/cache HELM_CONFIG_HOME=/tmp/helm/config HELM_DATA_HOME=/tmp/helm/data
EXPOSE 8081 8084
ENTRYPOINT ["/usr/local/bin/flotilla-repo-server"]
