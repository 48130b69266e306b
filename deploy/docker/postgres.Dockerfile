# syntax=docker/dockerfile:1
# PostgreSQL 15 with pg_taskevents installed: built against the same server
# packages as the runtime image, then only the installed files are copied.
# The server runs as the image's "postgres" user (uid 999), never as root.
#
#   docker build -f deploy/docker/postgres.Dockerfile -t taskevents/postgres:0.2.0 .
#
# (Not built in the project's test suite: that machine has no container
# engine.  test/0630 checks this file's paths and names.)
ARG PG_MAJOR=15
FROM postgres:${PG_MAJOR}-bookworm AS build
ARG PG_MAJOR
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential postgresql-server-dev-${PG_MAJOR} \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# the extension only: without relay/ the top-level Makefile skips the relay
COPY Makefile pg_taskevents.control ./
COPY extension/ extension/
RUN make -j"$(nproc)" && make install DESTDIR=/out

FROM postgres:${PG_MAJOR}-bookworm
COPY --from=build /out/usr/ /usr/
# first start only: CREATE EXTENSION, the relay role, grant_relay()
COPY deploy/docker/initdb/ /docker-entrypoint-initdb.d/
# preloaded: commits that wrote events wake the relay (docs/relay.md)
CMD ["postgres", "-c", "shared_preload_libraries=pg_taskevents"]
USER postgres
