# HexGrid Playground: Daphne serving Django + Channels. Build: docker build -t hexgrid-playground .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY playground ./playground
COPY chat ./chat
# Wheels for the app and its pinned dependencies (no dev extras in the image).
RUN pip wheel --no-cache-dir --wheel-dir /wheels --constraint constraints.txt .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PLAYGROUND_DATA_DIR=/data
RUN useradd --create-home --uid 10001 playground && mkdir -p /data && chown playground /data
WORKDIR /app
COPY --from=build /wheels /wheels
COPY constraints.txt ./
RUN pip install --no-cache-dir --no-index --find-links /wheels --constraint constraints.txt hexgrid-playground \
    && rm -rf /wheels
COPY manage.py ./
COPY playground ./playground
COPY chat ./chat
COPY templates ./templates
COPY static ./static
# Static files are collected at build time with throw-away settings (nothing secret is baked in).
RUN DEBUG=False SECRET_KEY=build-only FIELD_ENCRYPTION_KEYS=MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA= \
    python manage.py collectstatic --noinput
USER playground
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"
# Production needs SECRET_KEY, FIELD_ENCRYPTION_KEYS, ALLOWED_HOSTS (and DATABASE_URL / REDIS_URL to scale out).
CMD ["sh", "-c", "python manage.py migrate --noinput && python manage.py bootstrap && exec python -m playground.serve --bind 0.0.0.0 --port 8000 --proxy-headers"]
