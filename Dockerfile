# The sluice binary in a small image: `sluice serve` (the gateway) or `sluice worker`.
#   docker build -t sluice .
# Used by docker-compose.yml. Not built on the development machines (no container engine).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p gateway && cp target/release/sluice /usr/local/bin/sluice

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/sluice --create-home sluice
COPY --from=build /usr/local/bin/sluice /usr/local/bin/sluice
USER sluice
WORKDIR /var/lib/sluice
# pg wire, Flight SQL, HTTP (HS2, REST, /metrics, /ui); workers listen on 50052.
EXPOSE 5433 50051 8080 50052
ENTRYPOINT ["sluice"]
CMD ["serve", "--data-dir", "/var/lib/sluice/data"]
