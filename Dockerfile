# pauseproxy container image.
#
#   docker build -t pauseproxy:0.1.0 --build-arg VERSION=0.1.0 .
#   docker run --rm -p 6432:6432 -p 9930:9930 \
#     -v /etc/pauseproxy:/etc/pauseproxy:ro \
#     -e APP_DB_PASSWORD=... pauseproxy:0.1.0
#
# The image holds one static binary and nothing else: no shell, no package
# manager (distroless "static", which has CA certificates, /etc/passwd with
# the nonroot user 65532 and tzdata). The configuration is mounted at
# /etc/pauseproxy/pauseproxy.toml (a Kubernetes ConfigMap, see
# deploy/kubernetes/); passwords come from the environment (password_env)
# or from files mounted from a Secret (password_file), never from the image.
#
# go test ./deploy runs this file's build command on the repository and
# checks the paths below against the Kubernetes manifests and the systemd
# unit: keep the go build line on one RUN, without shell pipelines.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# CGO_ENABLED=0: a static binary that runs on an image without libc.
# -trimpath: no build machine paths in the binary. -s -w: no symbol table
# or DWARF (smaller; stack traces keep function names).
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/pauseproxy ./cmd/pauseproxy

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="pauseproxy" \
      org.opencontainers.image.description="PostgreSQL pooler that holds traffic, instead of failing it, while the primary changes" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/pauseproxy /pauseproxy
# nonroot:nonroot in distroless; numeric so that Kubernetes' runAsNonRoot
# can check it without reading /etc/passwd.
USER 65532:65532
# 6432: PostgreSQL clients and the admin console (listen_port).
# 9930: /metrics, /healthz and /readyz (http_listen).
EXPOSE 6432 9930
# SIGTERM drains: stop accepting, let transactions in flight finish within
# shutdown_timeout, exit. A second SIGTERM or a SIGINT closes at once.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/pauseproxy"]
CMD ["--config", "/etc/pauseproxy/pauseproxy.toml"]
