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

# Both base images are pinned by digest, the tag kept beside it for
# readers: a rebuild gets the same bytes, and moving to a newer base is a
# reviewed commit. The digests were read from public Dockerfiles that pin
# the same tags (not from the registry itself, which this repository's
# tooling cannot reach): check and refresh them with
#   docker buildx imagetools inspect golang:1.26 --format '{{json .Manifest.Digest}}'
#   docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot --format '{{json .Manifest.Digest}}'
# (or crane digest IMAGE). The build stage's Go must stay go.mod's
# (go test ./deploy checks the tag).
ARG GO_IMAGE=golang:1.26@sha256:9edf71320ef8a791c4c33ec79f90496d641f306a91fb112d3d060d5c1cee4e20

FROM ${GO_IMAGE} AS build
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

FROM gcr.io/distroless/static-debian12:nonroot@sha256:d093aa3e30dbadd3efe1310db061a14da60299baff8450a17fe0ccc514a16639
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
# Docker's health check (Kubernetes uses the probes of deploy/kubernetes/
# instead). There is no shell or curl in the image: the binary probes its
# own /healthz on the http_listen of the mounted configuration, exit 0 or 1.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/pauseproxy", "health", "--config", "/etc/pauseproxy/pauseproxy.toml"]
ENTRYPOINT ["/pauseproxy"]
CMD ["--config", "/etc/pauseproxy/pauseproxy.toml"]
