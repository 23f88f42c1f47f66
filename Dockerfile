# syntax=docker/dockerfile:1
# solo-os: one image for every role (run, serve, worker) and for AWS Lambda.
#
#   docker build -t solo-os .                          # the runtime only (slim)
#   docker build -t solo-os:aws --build-arg EXTRAS=aws .   # + boto3, Mangum, the Lambda client
#   docker run -p 8000:8000 -e BILLING_WEBHOOK_SECRET=dev-secret solo-os
#
# The default command runs the billing example on SQLite in /data. Mount your own app and
# point SOLO_OS_APP at it; set DATABASE_URL for PostgreSQL (see docker-compose.yml).

ARG PYTHON_VERSION=3.11

# --- build: install the locked dependencies and solo-os into /opt/venv ----------------------
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv
RUN pip install "uv==0.13.9"
WORKDIR /src
ARG EXTRAS=""
# Dependencies first (a layer that survives code changes), exactly as uv.lock pins them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-default-groups --no-install-project \
        $(for e in $(echo "$EXTRAS" | tr ',' ' '); do printf -- '--extra %s ' "$e"; done)
COPY src ./src
RUN uv sync --frozen --no-default-groups --no-editable \
        $(for e in $(echo "$EXTRAS" | tr ',' ' '); do printf -- '--extra %s ' "$e"; done) \
 && case ",$EXTRAS," in *,aws,*) uv pip install --python /opt/venv/bin/python "awslambdaric>=2.2" ;; esac

# --- run: the virtualenv on a slim Python, as an unprivileged user ---------------------------
FROM python:${PYTHON_VERSION}-slim
RUN groupadd --system --gid 10001 solo \
 && useradd --system --uid 10001 --gid solo --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin solo \
 && mkdir -p /data \
 && chown solo:solo /data
COPY --from=build /opt/venv /opt/venv
COPY examples /app/examples
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SOLO_OS_APP=/app/examples/billing/app.py \
    DATABASE_URL=sqlite:////data/solo_os.db \
    FULFILMENTS_DB=/data/fulfilments.db \
    SOLO_OS_HEALTH_URL=http://127.0.0.1:8000/healthz
WORKDIR /app
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000
# The HTTP roles answer /healthz; a worker-only container sets SOLO_OS_HEALTH_URL="" (it has
# no port) and is then healthy while its process runs.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as r; u = os.environ.get('SOLO_OS_HEALTH_URL'); sys.exit(0 if not u or r.urlopen(u, timeout=4).status == 200 else 1)"]
ENTRYPOINT ["solo-os"]
CMD ["run", "--host", "0.0.0.0", "--port", "8000"]
