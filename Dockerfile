# syntax=docker/dockerfile:1
# One image for both long-running commands:
#   docker run IMAGE operator ...      docker run IMAGE worker --handlers my.module ...
# Your workers need your handler code: build FROM this image and COPY it in.
#
# Base: a version tag pinned by the digest of its multi-platform image index,
# so every build starts from the same bytes (the tag alone moves with Debian
# rebuilds). To update: pick the new tag, read its index digest with
# `docker buildx imagetools inspect python:<tag>` (the "Digest:" line; the
# Docker official images' repo-info repository lists it too) and replace
# both here. --build-arg PYTHON_IMAGE=... overrides it for one build.
ARG PYTHON_IMAGE=python:3.12.14-slim-bookworm@sha256:b64e9d3a71eddaa1b3f80c04abf292b3139e3b7c4dd272d19c31dc1f91194d1b

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
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
# Byte code is compiled here and kept (see the final stage).
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --requirement docker/build-requirements.txt \
 && /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && python -m venv /opt/taskmill \
 && /opt/taskmill/bin/pip install --constraint docker/constraints.txt /wheels/taskmill-*.whl \
 && /opt/taskmill/bin/pip uninstall --yes pip \
 && /opt/taskmill/bin/python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash /opt/taskmill

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="taskmill" \
      org.opencontainers.image.description="Taskmill operator and worker" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/taskmill/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/taskmill /opt/taskmill
# The example handlers, so the chart's default (worker.handlers=examples.handlers) works.
COPY examples/handlers.py /app/examples/handlers.py
# The root filesystem is read-only at run time, so byte code missing from
# the image would be compiled again on every start (and never saved). The
# base image ships its standard library without .pyc files: compile it and
# the example handlers now. unchecked-hash .pyc files are used without
# comparing source timestamps, which COPY does not keep stable; nothing in
# an image changes after it is built.
RUN python -m compileall -q -j 0 --invalidation-mode unchecked-hash -x '/(test|tests|idle_test)/' \
      "$(python -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')" /app/examples
WORKDIR /app
# A fixed numeric non-root user (the chart's runAsUser), no home, no shell login.
USER 65532:65532
# 8080: the operator's lease API and /metrics; 9100: a worker's --metrics-port (the chart's default).
EXPOSE 8080 9100
ENTRYPOINT ["taskmill"]
CMD ["operator"]
