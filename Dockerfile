# One image for the whole pipeline: the gateway by default; docker-compose.yml runs each Nameko
# service from it with `command: nameko run ...`.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . .
RUN pip install ".[postgres,gateway]" \
    && useradd --system --create-home app \
    && mkdir -p /data && chown app /data

# config.yaml and topology.yaml are read from the working directory (/app). nameko's CLI
# imports eventlet, which warns that it is deprecated, before any logging is configured: that
# bare line would be the only one of a LOG_FORMAT=json log that is not JSON.
ENV DATA_DIR=/data PORT=8080 PYTHONWARNINGS=ignore::Warning:nameko.cli.commands
USER app
EXPOSE 8080
CMD ["python", "-m", "gateway"]
