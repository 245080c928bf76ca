# syntax=docker/dockerfile:1
# Two targets: `cpu` (default: CPU torch, faiss-cpu) and `gpu` (CUDA runtime, CUDA torch,
# faiss-gpu). Both run as a non-root user and serve `nodule-api` on port 8000.
#   docker build --target cpu -t nodule-search:cpu .
#   docker build --target gpu -t nodule-search:gpu .

ARG PYTHON_IMAGE=python:3.11-slim
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu24.04

# --- CPU image ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS cpu
ARG TORCH_VERSION=2.13.0
# torch's own CPU wheel index keeps the image free of CUDA libraries (~1.5 GB smaller).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    NODULE_INDEX_DIR=/srv/index NODULE_DATA_DIR=/srv/data NODULE_DEVICE=cpu
RUN useradd --create-home --uid 10001 nodule && mkdir -p /srv/index /srv/data /srv/models \
    && chown -R nodule /srv
WORKDIR /opt/nodule-search
# Dependencies first (a layer that survives code changes), then the project itself.
COPY pyproject.toml README.md ./
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
COPY model ./model
COPY indexer ./indexer
COPY app ./app
RUN pip install .
USER nodule
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["nodule-api", "--host", "0.0.0.0", "--port", "8000"]

# --- GPU image ------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS gpu
ARG TORCH_VERSION=2.13.0
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    NODULE_INDEX_DIR=/srv/index NODULE_DATA_DIR=/srv/data NODULE_DEVICE=cuda \
    PATH=/opt/venv/bin:$PATH
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* && python3 -m venv /opt/venv \
    && useradd --create-home --uid 10001 nodule && mkdir -p /srv/index /srv/data /srv/models \
    && chown -R nodule /srv
WORKDIR /opt/nodule-search
COPY pyproject.toml README.md ./
# The default torch wheel for Linux is the CUDA build.
RUN pip install "torch==${TORCH_VERSION}"
COPY model ./model
COPY indexer ./indexer
COPY app ./app
RUN pip install ".[gpu]" && pip uninstall -y faiss-cpu
USER nodule
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["nodule-api", "--host", "0.0.0.0", "--port", "8000"]
