# flotilla-server (the API) with the flotilla CLI beside it, on a distroless base, non-root.
#   docker build -f docker/server.Dockerfile -t ghcr.io/flotilla/flotilla-server:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p flotilla-server -p flotilla-cli \
    && install -D target/release/flotilla-server /out/flotilla-server \
    && install -D target/release/flotilla /out/flotilla

# glibc, CA certificates, /etc/passwd with nonroot (65532); no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/flotilla-server /usr/local/bin/flotilla-server
COPY --from=build /out/flotilla /usr/local/bin/flotilla
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/flotilla-server"]
