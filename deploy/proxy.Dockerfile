# The buffering reverse proxy in front of the API's gunicorn: Debian's nginx, configured at start
# from deploy/nginx.conf.template by deploy/nginx-config (the same files deploy/run-local uses).
#   docker build -f deploy/proxy.Dockerfile -t mnist-serve-proxy .
FROM debian:bookworm-slim

RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx-light \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/mnist-proxy \
 && chown www-data:www-data /var/lib/mnist-proxy

COPY deploy/nginx.conf.template deploy/nginx-config /etc/mnist-proxy/

# Listen on 8000 inside the container (published by docker-compose as API_BIND:API_PORT), pass
# to the `api` service, looked up through Docker's embedded DNS; pid, config and the temp files
# of large bodies in /var/lib/mnist-proxy.
ENV PROXY_LISTEN=0.0.0.0:8000 \
    PROXY_UPSTREAM=api:8000 \
    PROXY_RESOLVER=127.0.0.11 \
    PROXY_PREFIX=/var/lib/mnist-proxy \
    PROXY_ACCESS_LOG=/dev/stdout \
    PROXY_ERROR_LOG=stderr

# Unprivileged: port 8000 needs no root, and the master then runs its workers as itself.
USER www-data
EXPOSE 8000
# nginx's graceful stop: finish the requests in hand (within docker's stop timeout), then exit.
STOPSIGNAL SIGQUIT

# Readiness through the proxy (no curl in the image: bash's /dev/tcp).
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8000 && printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && head -c 12 <&3 | grep -q ' 200'"]

CMD ["sh", "-c", "/etc/mnist-proxy/nginx-config /var/lib/mnist-proxy/nginx.conf && exec nginx -e stderr -c /var/lib/mnist-proxy/nginx.conf"]
