# syntax=docker/dockerfile:1
# taskevents-relay image: build stage with the -dev packages, runtime stage
# with only the shared libraries, running as an unprivileged user.
#
#   docker build -f deploy/docker/relay.Dockerfile -t taskevents/relay:0.2.0 .
#
# (Run from the top of the checkout.  The project's CI machine has no
# container engine, so this file is checked by test/0630 for consistency,
# not built there.)
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config libpq-dev librdkafka-dev libjansson-dev libmicrohttpd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pg_taskevents.control ./
COPY relay/ relay/
RUN make -C relay -j"$(nproc)" \
 && make -C relay install DESTDIR=/out bindir=/usr/local/bin

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libpq5 librdkafka1 libjansson4 libmicrohttpd12 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 relay \
 && useradd --system --uid 10001 --gid relay --no-create-home --shell /usr/sbin/nologin relay
COPY --from=build /out/usr/local/bin/taskevents-relay /usr/local/bin/taskevents-relay
USER 10001:10001
# /metrics and /healthz; the default 127.0.0.1:9187 is unreachable from
# outside the container, so the image listens on all of its addresses
ENV TASKEVENTS_METRICS_ADDR=0.0.0.0:9187
EXPOSE 9187
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9187 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/taskevents-relay"]
