# The broker program in a small image. Built by docker-compose.yml; not used by CI (no Docker
# there), so this file is untested here.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p broker

FROM debian:bookworm-slim
COPY --from=build /src/target/release/broker /usr/local/bin/broker
WORKDIR /var/lib/broker
EXPOSE 61613
ENTRYPOINT ["broker"]
CMD ["start"]
