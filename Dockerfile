# rtu as a container image: Debian 12 slim, the tree `cmake --install` makes (the
# binary and its Lua runtime), run as a non-root user, `rtu run` by default.
#
#   docker build -t rtu .
#   docker run --rm --env-file my.env -v "$PWD/config:/home/node/app/configurations:ro" rtu check
#   docker run --rm --env-file my.env -v ... -p 3000:3000 rtu          # rtu run
#
# The build stage runs the README's build commands (section "Running it against a
# real Kafka and MongoDB"); spec/deploy/test_deploy.py checks that they stay the same
# and that the runtime stage installs a package for every library rtu links.

FROM debian:12-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      librdkafka-dev libmongoc-dev libbson-dev liblua5.4-dev libmicrohttpd-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release \
 && cmake --build build -j --target rtu \
 && DESTDIR=/out cmake --install build --prefix /usr/local

FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      librdkafka1 libmongoc-1.0-0 libbson-1.0-0 liblua5.4-0 libmicrohttpd12 libcurl4 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin rtu
# /usr/local/bin/rtu finds its Lua runtime in /usr/local/share/rtu/lua.
COPY --from=build /out/usr/local /usr/local
# Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
ENV HTTP_PORT=3000
EXPOSE 3000
# rtu finishes the batch in flight, commits and leaves the group on SIGTERM.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/rtu"]
CMD ["run"]
