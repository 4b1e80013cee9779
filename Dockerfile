# syntax=docker/dockerfile:1
# Tollgate image: the `tollgate` control plane, the `tollgate-echo` demo backend, and the Envoy
# filter at /opt/tollgate/tollgate_filter.wasm (copied into Envoy's volume by docker-compose.yml).

FROM rust:1-bookworm AS build
RUN rustup target add wasm32-wasip1
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release -p tollgate -p tollgate-e2e --bin tollgate --bin tollgate-echo \
 && cargo build --locked --release -p tollgate-filter --target wasm32-wasip1 \
 && mkdir -p /out \
 && cp target/release/tollgate target/release/tollgate-echo /out/ \
 && cp target/wasm32-wasip1/release/tollgate_filter.wasm /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/tollgate --create-home tollgate
COPY --from=build /out/tollgate /out/tollgate-echo /usr/local/bin/
COPY --from=build /out/tollgate_filter.wasm /opt/tollgate/tollgate_filter.wasm
USER tollgate
WORKDIR /var/lib/tollgate
EXPOSE 8090 18000
CMD ["tollgate"]
