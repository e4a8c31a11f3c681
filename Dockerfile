# syntax=docker/dockerfile:1
# One image for every process: `erasure worker`, `erasure codec-server`, and the CLI (`erasure submit`, `status`, ...).
# The base is pinned by digest; deploy/check.py refuses a FROM line without one. Re-resolve it when you update:
#   docker buildx imagetools inspect python:3.11-slim-bookworm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/erasure
COPY pyproject.toml constraints.txt README.md ./
COPY domain domain
COPY evidence evidence
COPY connectors connectors
COPY stores stores
COPY activities activities
COPY workflows workflows
COPY erasure erasure
COPY emulators emulators
COPY examples examples
# Runtime dependencies only: no test tools, and no dev-stack extra (embedded Postgres, moto, the Temporal dev server).
RUN /opt/erasure/bin/pip install -c constraints.txt .

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/erasure/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 ERASURE_HOME=/var/lib/erasure
RUN groupadd --system --gid 10001 erasure \
    && useradd --system --uid 10001 --gid erasure --home-dir /var/lib/erasure --create-home erasure
COPY --from=build /opt/erasure /opt/erasure
USER 10001:10001
WORKDIR /var/lib/erasure
EXPOSE 7242 9464
ENTRYPOINT ["erasure"]
CMD ["worker"]
