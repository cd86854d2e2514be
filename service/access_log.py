"""The JSON access log: one object per line on stderr, which gunicorn passes through to its log.

Machine readable without a parser for gunicorn's access-log format. It is a plain ``logging``
logger (``mnist_serve.access``), so an operator or a test can attach handlers to it as to any
other. What it costs matters, because it runs on every request: through ``logging`` a line
costs a ``LogRecord``, a caller lookup (a walk up the stack), a formatter and a lock, together
about as much as every metric of the request
(docs/decisions/0013-cheap-request-metrics-and-access-log.md). So while the logger
holds only the handler configured here (the default), a line goes straight to that handler's
stream under the handler's lock: the same bytes, flushed the same way. With any other handler
attached, a filter on either, or the logger disabled or raised above INFO, every line takes the
ordinary ``logging`` path.
"""

from __future__ import annotations

import logging
import sys


class AccessLog:
    """Lines of one logger, written directly while its only handler is the one ``configure`` added."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.handler: logging.StreamHandler | None = None

    def configure(self) -> None:
        """Attach a stderr handler once, unless the logger was already given handlers elsewhere."""
        if self.handler is None and not self.logger.handlers:
            self.handler = logging.StreamHandler(sys.stderr)
            self.handler.setFormatter(logging.Formatter("%(message)s"))
            self.logger.addHandler(self.handler)
            self.logger.setLevel(logging.INFO)
            self.logger.propagate = False

    def write(self, line: str) -> None:
        """Log one access line (already JSON)."""
        logger, handler = self.logger, self.handler
        if (handler is not None and logger.handlers == [handler] and not logger.disabled
                and logger.isEnabledFor(logging.INFO) and handler.level <= logging.INFO
                and not logger.filters and not handler.filters):
            with handler.lock:  # type: ignore[union-attr]  # StreamHandler always creates its lock
                stream = handler.stream
                stream.write(line + "\n")
                stream.flush()
        else:
            logger.info(line)


access_log = AccessLog(logging.getLogger("mnist_serve.access"))
