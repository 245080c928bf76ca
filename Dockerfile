# Two targets: `cpu` (default: CPU torch, faiss-cpu) and `gpu` (CUDA runtime, CUDA torch,
# faiss-gpu). Each is two stages: a build stage fills a virtual environment, the runtime stage
# copies only that venv (no compilers, no pip caches, no sources beyond the package). Both run
# as a non-root user, serve `nodule-api` on port 8000 and report healthy through /readyz.
#   docker build --target cpu -t nodule-search:cpu .
#   docker build --target gpu -t nodule-search:gpu .   (needs a registry with the CUDA base)
# No `# syntax=` line: BuildKit would fetch that frontend image from Docker Hub, which closed
# networks cannot reach; the Dockerfile uses nothing beyond the classic builder.
#
# Build arguments:
#   PYTHON_IMAGE   base of the CPU image (default python:3.11-slim)
#   CUDA_IMAGE     base of the GPU image (default nvidia/cuda:12.6.3-runtime-ubuntu24.04)
#   TORCH_SOURCE   `index`: torch's CPU wheel index (TORCH_INDEX_URL; the default, for hosts
#                  with internet), or `wheelhouse`: the CPU wheel put in ./wheelhouse/ (its
#                  dependencies from PyPI; no CUDA download on machines that hold the wheel on
#                  disk; .ci/compose-test does this)

ARG PYTHON_IMAGE=python:3.11-slim
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu24.04

# --- CPU: build stage --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS cpu-build
ARG TORCH_VERSION=2.13.0
ARG TORCH_SOURCE=index
# torch's own CPU wheel index keeps the image free of CUDA libraries (~1.5 GB smaller).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY wheelhouse/ /tmp/wheelhouse/
# Dependencies first (a layer that survives code changes), then the project itself.
RUN if [ "${TORCH_SOURCE}" = wheelhouse ]; then \
        pip install --find-links /tmp/wheelhouse "torch==${TORCH_VERSION}+cpu"; \
    else \
        pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"; \
    fi
WORKDIR /tmp/src
COPY pyproject.toml README.md ./
# The dependencies pyproject names, in their own layer: a code change rebuilds only the last one.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install -r requirements.txt
COPY model ./model
COPY indexer ./indexer
COPY app ./app
RUN pip install --no-deps . && python -c "import app.main, indexer.cli, model.nn.network"

# --- CPU: runtime ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    NODULE_INDEX_DIR=/srv/index NODULE_DATA_DIR=/srv/data NODULE_DEVICE=cpu \
    HOME=/tmp MPLCONFIGDIR=/tmp/matplotlib
COPY --from=cpu-build /opt/venv /opt/venv
# Everything the processes write lies under /srv (volumes) and /tmp (a tmpfs in compose), so
# the root filesystem can be mounted read-only.
RUN useradd --no-create-home --uid 10001 nodule && mkdir -p /srv/index /srv/data /srv/models \
    && chown -R nodule /srv
WORKDIR /srv
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["nodule-api", "--host", "0.0.0.0", "--port", "8000"]

# --- GPU: build stage --------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS gpu-build
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 \
    DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The default torch wheel for Linux is the CUDA build.
RUN pip install "torch==${TORCH_VERSION}"
WORKDIR /tmp/src
COPY pyproject.toml README.md ./
COPY model ./model
COPY indexer ./indexer
COPY app ./app
# hadolint ignore=DL3013
RUN pip install ".[gpu]" && pip uninstall -y faiss-cpu

# --- GPU: runtime ------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS gpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    NODULE_INDEX_DIR=/srv/index NODULE_DATA_DIR=/srv/data NODULE_DEVICE=cuda \
    HOME=/tmp MPLCONFIGDIR=/tmp/matplotlib DEBIAN_FRONTEND=noninteractive
# The interpreter the venv points at, nothing else (no pip, no compilers).
RUN apt-get update && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --no-create-home --uid 10001 nodule && mkdir -p /srv/index /srv/data /srv/models \
    && chown -R nodule /srv
COPY --from=gpu-build /opt/venv /opt/venv
WORKDIR /srv
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["nodule-api", "--host", "0.0.0.0", "--port", "8000"]
