# flotilla-server (the API and the web UI) with the flotilla CLI beside it, on a distroless
# base, non-root.
#   docker build -f docker/server.Dockerfile -t ghcr.io/flotilla/flotilla-server:0.1.0 .
# The web UI is built from ui/ (versions pinned in its package-lock.json) and embedded.
FROM node:20-bookworm AS ui
WORKDIR /ui
COPY ui/package.json ui/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY ui/ ./
RUN npm run build -- --outDir /ui-dist --emptyOutDir

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
COPY --from=ui /ui-dist /ui-dist
ENV FLOTILLA_UI_DIST=/ui-dist
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
