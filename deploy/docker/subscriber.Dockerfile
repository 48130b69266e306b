# syntax=docker/dockerfile:1
# The reference subscriber (examples/subscriber): a static Go binary on
# debian-slim, running as an unprivileged user.
#
#   docker build -f deploy/docker/subscriber.Dockerfile -t taskevents/subscriber:0.2.0 .
#
# (Run from the top of the checkout.  The project's CI machine has no
# container engine: test/0630 checks this file, test/0640 runs the same
# program outside a container behind a real daprd.)
FROM golang:1.24-bookworm AS build
WORKDIR /src
COPY examples/subscriber/go.mod examples/subscriber/go.sum ./
RUN go mod download
COPY examples/subscriber/ ./
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/taskevents-subscriber .

FROM debian:bookworm-slim
RUN groupadd --system --gid 10002 subscriber \
 && useradd --system --uid 10002 --gid subscriber --no-create-home --shell /usr/sbin/nologin subscriber
COPY --from=build /out/taskevents-subscriber /usr/local/bin/taskevents-subscriber
USER 10002:10002
# 3000: Dapr's deliveries, on loopback only (the sidecar shares the pod's
# network); 8080: /healthz and /livez for the kubelet
ENV SUBSCRIBER_LISTEN=127.0.0.1:3000 SUBSCRIBER_PROBE_LISTEN=0.0.0.0:8080
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/taskevents-subscriber"]
