"""``retrain``: train a new version on a dataset, publish it atomically, maybe promote it.

Progress goes into the job's meta once per epoch; the cancel flag is checked there too and
stops the run through ``TrainingCanceled`` before anything is published. The version's
manifest records the job id, so a retry after a crash that happened after publishing finds
that version instead of publishing a second one.
"""

from __future__ import annotations

from typing import Any

from core.datasets import DatasetError
from core.registry import PRODUCTION, UNCHECKED, AliasChanged, ModelRegistry, NoModelPublished, RegistryError
from core.training_config import TrainConfig
from trainer.evaluation import evaluate
from trainer.pipeline import load_splits, train_and_publish
from trainer.training import EpochReport, TrainingCanceled
from worker.context import get_context
from worker.progress import JobReporter, peak_rss_mb

PROMOTE_CHOICES = ("never", "if_better", "always")


def find_version_of_job(registry: ModelRegistry, name: str, job_id: str) -> int | None:
    for version in reversed(registry.versions(name)):
        if registry.manifest(name, version).get("job_id") == job_id:
            return version
    return None


def _beats(new: dict[str, float], old: dict[str, float]) -> bool:
    """Higher dev accuracy wins; on a tie the lower dev loss does."""
    if new["accuracy"] != old["accuracy"]:
        return new["accuracy"] > old["accuracy"]
    return new["loss"] < old["loss"]


def retrain(job_id: str, data: str, config: dict[str, Any], promote: str = "if_better",
            dev_fraction: float = 0.2) -> dict[str, Any]:
    context = get_context()
    registry, name = context.registry, context.settings.model_name
    reporter = JobReporter(context.redis, job_id)
    if promote not in PROMOTE_CHOICES:
        raise reporter.fail(f"promote must be one of {', '.join(PROMOTE_CHOICES)}, got {promote!r}")
    reporter.check_canceled()
    train_config = TrainConfig(**config)

    version = find_version_of_job(registry, name, job_id)
    if version is None:
        reporter.update(0.0, "loading data")

        def on_epoch(report: EpochReport) -> None:
            if reporter.canceled():
                raise TrainingCanceled()
            accuracy = "" if report.dev_accuracy is None else f", dev accuracy {report.dev_accuracy:.4f}"
            reporter.update(0.95 * report.epoch / report.epochs, f"epoch {report.epoch}/{report.epochs}{accuracy}",
                            epoch=report.epoch, epochs=report.epochs, last_epoch=report.as_dict())

        try:
            published = train_and_publish(registry, name, data, train_config, dev_fraction=dev_fraction,
                                          on_epoch=on_epoch, extra_manifest={"job_id": job_id})
        except TrainingCanceled:
            raise reporter.fail("canceled by request; nothing was published") from None
        except (DatasetError, ValueError) as exc:
            raise reporter.fail(str(exc).replace(data, "the training data")) from None
        version = published.version
    reporter.update(0.96, f"published version {version}; deciding promotion", produced_version=version)

    manifest = registry.manifest(name, version)
    new_metrics = {"accuracy": manifest["metrics"]["dev_accuracy"], "loss": manifest["metrics"]["dev_loss"]}
    summary: dict[str, Any] = {"produced_version": version, "dev": new_metrics, "promote": promote}
    # What production designates now; the promotion below is a compare-and-set against it, so an
    # operator's promotion or rollback during the (slow) evaluation is never overwritten.
    current_alias = registry.aliases(name).get(PRODUCTION)
    try:
        production = registry.resolve(name)
    except NoModelPublished:
        production = None
    expected = UNCHECKED
    if production == version:
        promoted, reason = True, "it is the production version already"
    elif promote == "never":
        promoted, reason = False, "promote=never"
    elif promote == "always" or production is None:
        promoted, reason = True, "promote=always" if promote == "always" else "no production version"
    else:
        # Same dev rows for both: the tail of the training file, exactly as the trainer split it.
        _, dev_set = load_splits(data, None, dev_fraction)
        report = evaluate(context.predictor.get(version=production), dev_set)
        old_metrics = {"accuracy": report["accuracy"], "loss": report["loss"]}
        summary["production_version"], summary["production_dev"] = production, old_metrics
        promoted = _beats(new_metrics, old_metrics)
        reason = (f"dev accuracy {new_metrics['accuracy']:.4f} vs production v{production} "
                  f"{old_metrics['accuracy']:.4f}")
        expected = current_alias
    if promoted and production != version:
        try:
            registry.promote(name, PRODUCTION, version, expected=expected)
        except AliasChanged:
            now = registry.aliases(name).get(PRODUCTION)
            promoted = False
            reason += (f"; not promoted: production moved from v{production} to v{now} during the evaluation, "
                       "and that change is kept")
        except RegistryError as exc:  # the version just published does not load: say so, do not crash
            promoted, reason = False, f"not promoted: {exc}"
    summary.update(promoted=promoted, promotion_reason=reason, peak_rss_mb=peak_rss_mb())
    stage = f"done: version {version} {'promoted to production' if promoted else 'published, not promoted'}"
    reporter.update(1.0, stage, **summary)
    return summary
