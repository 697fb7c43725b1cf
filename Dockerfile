# The image every Masklet service runs (web, workers, beat). Build: docker compose build.
FROM node:20-bookworm-slim AS frontend
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt ./
RUN pip install --upgrade pip setuptools wheel \
    && pip install $(grep -E '^(torch|torchvision)==' requirements.txt) \
    && SAM2_BUILD_CUDA=0 pip install --no-build-isolation -r requirements.txt
COPY . .
COPY --from=frontend /src/frontend/dist ./frontend/dist
RUN useradd --create-home masklet && mkdir -p /data && chown masklet /data
USER masklet
EXPOSE 8000
