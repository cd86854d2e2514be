"""Job endpoints (``/v1/jobs``): batch scoring and retraining on RQ."""

from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint("jobs", __name__)
