# syntax=docker/dockerfile:1
#
# Caddy with Keygate. Build and run:
#
#   docker build -t keygate .
#   docker run -d --name keygate -p 80:80 -p 443:443 -v keygate-data:/data \
#     -e UPSTREAM=api.internal:8080 keygate
#   docker exec keygate caddy apikey account create --name ops --scopes '*'
#
# The admin endpoint stays on localhost:2019 inside the container: never
# publish port 2019 (SECURITY.md). compose.yaml runs two gateways on PostgreSQL.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
# With .git in the context, Go stamps the commit into the binary.
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	dist/build /out/caddy
# Caddy's directories, owned by the runtime user (distroless "nonroot").
RUN mkdir -p /out/data /out/config && chown 65532:65532 /out/data /out/config

# Static: CA certificates, tzdata, a non-root user, no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/caddy /usr/bin/caddy
COPY --from=build --chown=65532:65532 /out/data /data
COPY --from=build --chown=65532:65532 /out/config /config
COPY dist/container.Caddyfile /etc/caddy/Caddyfile
ENV XDG_DATA_HOME=/data XDG_CONFIG_HOME=/config HOME=/data
USER 65532:65532
VOLUME ["/data", "/config"]
# A non-root process binds 80 and 443 because Docker sets the container's
# net.ipv4.ip_unprivileged_port_start to 0 (compose.yaml sets it too).
EXPOSE 80 443 443/udp
WORKDIR /data
CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
