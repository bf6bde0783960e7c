# One image for every service; each Deployment picks its command (python -m services.<name>).
# syntax=docker/dockerfile:1

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/wxkf
COPY pyproject.toml README.md ./
COPY libs ./libs
COPY services ./services
# A regular (non-editable) install: the final stage needs no source tree and no build tools.
RUN /opt/wxkf/bin/pip install --no-compile . \
    && /opt/wxkf/bin/python -m compileall -q /opt/wxkf/lib

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="wxkf" \
      org.opencontainers.image.description="WeChat Mini Program customer service backend"
ENV PATH=/opt/wxkf/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WXKF_LOG_FORMAT=json
RUN groupadd --system --gid 10001 wxkf \
    && useradd --system --uid 10001 --gid wxkf --home-dir /nonexistent --shell /usr/sbin/nologin wxkf
COPY --from=build /opt/wxkf /opt/wxkf
COPY examples/rules.yaml /etc/wxkf/rules.yaml
USER 10001:10001
WORKDIR /tmp
# Public ports (ingress, media), then the internal one (health, readiness, metrics); router
# and sender serve only the internal one.
EXPOSE 8080 8084 9180
# Overridden per Deployment; ingress is the one every installation has.
CMD ["python", "-m", "services.ingress"]
