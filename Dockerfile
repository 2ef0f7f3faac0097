# backlog-sync: one container running the daemon (SQLite by default, PostgreSQL via DATABASE_URL).
FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml constraints.txt README.md ./
COPY service ./service
COPY connectors ./connectors
COPY mappings ./mappings
COPY sandbox ./sandbox
RUN python -m venv /opt/backlog-sync \
 && /opt/backlog-sync/bin/pip install -c constraints.txt .

FROM python:3.11-slim AS runtime
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin backlogsync \
 && mkdir -p /data && chown backlogsync /data
COPY --from=build /opt/backlog-sync /opt/backlog-sync
ENV PATH=/opt/backlog-sync/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DATABASE_URL=sqlite:////data/backlog-sync.db \
    BACKLOG_SYNC_CONFIG=/config/backlog-sync.yaml
USER backlogsync
WORKDIR /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"
# Migrations run first so a fresh volume starts cleanly; the daemon refuses an unmigrated database otherwise.
CMD ["sh", "-c", "backlog-sync db upgrade && exec backlog-sync serve --host 0.0.0.0 --port 8000"]
