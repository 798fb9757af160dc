# credit-monitor image: the `monitor` CLI (worker, api, produce) on Python 3.11.
#
#   docker build -t credit-monitor:local .
#   docker run --rm credit-monitor:local monitor --help
#
# python:3.11-slim on Debian 12 (bookworm), where requirements.txt was pinned and measured.
# A builder stage turns requirements.txt into wheels: on x86_64 every pin has a binary wheel
# and nothing is compiled; on arm64 some (faust-streaming) are built from source there, so
# the final image never needs a compiler.

FROM python:3.11-slim-bookworm AS wheels
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt /tmp/requirements.txt
RUN pip wheel --wheel-dir /wheels -r /tmp/requirements.txt

FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Dependencies first, so editing the code does not reinstall them.
COPY requirements.txt .
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels -r requirements.txt

# The project itself (its dependencies are already there).
COPY . .
# Runs as a plain user who may create files in /app (.run/, faust's data dir).
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /app monitor \
    && mkdir -p /app/.run && chown monitor /app && chown -R monitor /app/.run
USER monitor

# No ENTRYPOINT: compose (or `docker run IMAGE monitor ...`) gives the whole command.
CMD ["monitor", "worker"]
