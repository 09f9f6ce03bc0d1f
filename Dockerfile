# The broker program in a small image. Built by docker-compose.yml; not used by CI (no Docker
# there), so this file is untested here.
FROM rust:1-bookworm AS build
WORKDIR /src
# The LevelDB engine links Debian's RocksDB; bindgen needs libclang to read its header.
RUN apt-get update -qq && apt-get install -y -qq librocksdb-dev libclang-dev && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release -p broker --features leveldb

FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq librocksdb7.8 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/broker /usr/local/bin/broker
WORKDIR /var/lib/broker
EXPOSE 61613
ENTRYPOINT ["broker"]
CMD ["start"]
