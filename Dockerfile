# syntax=docker/dockerfile:1
# pit-streams worker image: `docker build -t pit-streams:0.1.0 .`
#
# The image holds code and the topic catalog only. No certificate, key or secret is ever baked
# in (contract 4.1): Kafka mTLS material is mounted at run time from the Strimzi KafkaUser secret
# and the cluster CA, into the directory named by PIT_KAFKA_TLS_DIR (see k8s/apps/*.yaml).
# ENTRYPOINT/CMD are the contract with the Deployments rendered by `pit-streams k8s render`:
# they pass only arguments, e.g. `worker -A apps.nav`.

# Python minor version = the one requirements.lock was resolved with.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY pit_streams/ pit_streams/
# The project's wheel and a wheel of every dependency, at the pinned versions.
RUN pip wheel --wheel-dir /wheels --constraint requirements.lock .

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 pit \
 && useradd --system --uid 10001 --gid pit --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin pit
# Installed from the builder's wheels only: no index, no compiler, nothing unpinned.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels pit-streams
WORKDIR /app
COPY apps/ apps/
COPY infra/topics.yaml infra/topics.yaml
RUN mkdir -p /var/lib/pit && chown pit:pit /var/lib/pit
ENV PIT_CATALOG=/app/infra/topics.yaml PIT_DATA_DIR=/var/lib/pit PIT_HEALTH_PORT=8080
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["pit-streams"]
CMD ["worker"]
