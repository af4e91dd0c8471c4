# The Tidings image: the worker by default (`python -m worker`); the HTTP API runs from the same
# image with `uvicorn starter.http:app` (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed uid/gid so that volume permissions and Kubernetes securityContext can name them.
RUN groupadd --system --gid 10001 tidings \
    && useradd --system --uid 10001 --gid tidings --create-home --home-dir /home/tidings tidings

WORKDIR /app

# The pinned dependencies first, in their own layer: they change less often than the code.
# requirements/lock.txt is the production set (no dev or dev-stack extra; `make lock`).
COPY requirements/lock.txt requirements/lock.txt
RUN pip install --no-cache-dir -r requirements/lock.txt

# pyproject.toml and README.md: the build needs both (README.md is the project's readme).
COPY pyproject.toml README.md ./
COPY tidings/ tidings/
COPY workflows/ workflows/
COPY activities/ activities/
COPY worker/ worker/
COPY starter/ starter/

# Tidings itself only: every dependency came from the lock above.
RUN pip install --no-cache-dir --no-deps .
# The process imports the code from /app (the working directory comes first on sys.path), and
# PYTHONDONTWRITEBYTECODE keeps it from caching bytecode there: without this, the workflow
# sandbox compiled workflows/notification.py from source for every run it loaded (about 2 ms
# of CPU each). Bytecode compiled now is read, never written, at run time.
RUN python -m compileall -q tidings workflows activities worker starter

# The code stays root-owned and read-only to the process that runs it.
USER tidings

EXPOSE 8000
CMD ["python", "-m", "worker"]
