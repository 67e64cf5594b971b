# syntax=docker/dockerfile:1
# One image for both long-running commands:
#   docker run IMAGE operator ...      docker run IMAGE worker --handlers my.module ...
# Your workers need your handler code: build FROM this image and COPY it in.
#
# Base: a pinned version tag. Pin it further by digest when you build
# (`docker buildx imagetools inspect python:3.12.12-slim-bookworm`) and pass
# --build-arg PYTHON_IMAGE=python:3.12.12-slim-bookworm@sha256:...; no digest
# is written here because none could be checked from where this file was made.
ARG PYTHON_IMAGE=python:3.12.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Pinned inputs: the build backend (build-requirements.txt) and the runtime
# dependency closure (constraints.txt, from hack/update-constraints.sh).
COPY docker/constraints.txt docker/build-requirements.txt /src/docker/
COPY pyproject.toml README.md /src/
COPY operator /src/operator
COPY crds /src/crds
COPY examples /src/examples
# The wheel is built in a throw-away venv with a pinned build backend; the
# runtime venv gets the wheel plus exactly the pinned dependency closure.
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --requirement docker/build-requirements.txt \
 && /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && python -m venv /opt/taskmill \
 && /opt/taskmill/bin/pip install --constraint docker/constraints.txt /wheels/taskmill-*.whl \
 && /opt/taskmill/bin/pip uninstall --yes pip \
 && find /opt/taskmill -name '__pycache__' -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="taskmill" \
      org.opencontainers.image.description="Taskmill operator and worker" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/taskmill/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/taskmill /opt/taskmill
# The example handlers, so the chart's quick start (worker.handlers=examples.handlers) works.
COPY examples/handlers.py /app/examples/handlers.py
WORKDIR /app
# A fixed numeric non-root user (the chart's runAsUser), no home, no shell login.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["taskmill"]
CMD ["operator"]
