# The worker (`prevent-service run`) in a container: a non-root user, the config read-only in
# /config and the state (ledger, report workbooks) in /state, both volumes. docs/running.md
# ("Container") says how to run it and how this recipe was verified.
#
#   docker build -t prevent-service .
#   docker run -d --name prevent-service --restart unless-stopped --stop-timeout 120 \
#     -v /etc/prevent-service:/config:ro -v prevent-state:/state \
#     --env-file /etc/prevent-service/secrets.env prevent-service
#
# Behind a TLS-inspecting proxy, hand pip the proxy's CA for the build only (it is not kept):
#   DOCKER_BUILDKIT=1 docker build --secret id=ca,src=/path/to/proxy-ca.pem -t prevent-service .

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN --mount=type=secret,id=ca \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
 && python3 -m venv /opt/prevent-service \
 && /opt/prevent-service/bin/pip install --no-cache-dir --disable-pip-version-check /src

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 prevent \
 && useradd --system --uid 10001 --gid 10001 --home-dir /state --no-create-home \
      --shell /usr/sbin/nologin prevent \
 && install -d -m 700 -o prevent -g prevent /state \
 && install -d -m 755 /config
COPY --from=build /opt/prevent-service /opt/prevent-service

USER prevent
WORKDIR /state
# The config must say [state] path = "/state": a relative path would point into /config.
ENV PREVENT_SERVICE_CONFIG=/config/config.toml \
    PATH=/opt/prevent-service/bin:$PATH \
    PYTHONUNBUFFERED=1
VOLUME ["/state"]
# status exits 1 when the worker has not completed an intake cycle lately or something waits
# for a person: what monitoring should see (counts and references only, never concern text).
HEALTHCHECK --interval=5m --timeout=60s --start-period=5m CMD ["prevent-service", "status"]
ENTRYPOINT ["prevent-service"]
CMD ["run"]
