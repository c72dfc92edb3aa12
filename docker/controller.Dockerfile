# flotilla-controller: a static-ish Rust binary on a distroless base, non-root.
#   docker build -f docker/controller.Dockerfile -t ghcr.io/flotilla/flotilla-controller:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p flotilla-controller \
    && install -D target/release/flotilla-controller /out/flotilla-controller

# glibc, CA certificates, /etc/passwd with nonroot (65532); no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/flotilla-controller /usr/local/bin/flotilla-controller
USER 65532:65532
EXPOSE 8082 8083
ENTRYPOINT ["/usr/local/bin/flotilla-controller"]
