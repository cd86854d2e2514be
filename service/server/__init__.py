"""The HTTP server room: gunicorn worker classes and server hooks (gunicorn's extension points).

``deploy/gunicorn.conf.py`` holds settings only and names what lives here:

- ``balanced``: ``BalancedThreadWorker``, gthread whose workers share out keep-alive connections
  (a worker holding more than another leaves a new connection to it, for at most 100 ms);
- ``inline``: ``InlineThreadWorker``, the balanced worker answering predictions that have arrived
  whole on its main thread (``arrived_whole`` peeks at the socket), the default;
- ``hooks``: the server hooks (metrics directory, the proxy's client address, worker slots,
  malloc thresholds, each worker's gRPC server);
- ``grpc_server``: one worker's gRPC server (the V2 protocol, health, reflection), imported by a
  worker after the fork only.

This package must stay importable in gunicorn's master without the app: it imports gunicorn and
the standard library only (``service/__init__.py`` loads the app lazily; ``grpc_server`` is
imported by a worker). Every gunicorn name it
relies on is pinned by tests/contracts/.
"""
