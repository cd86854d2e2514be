"""``retrain``: train a new version on a dataset, publish it atomically, maybe promote it.

Progress goes into the job's meta once per epoch; the cancel flag is checked there too and
stops the run through ``TrainingCanceled`` before anything is published. The version's
manifest records the job id, so a retry after a crash that happened after publishing finds
that version instead of publishing a second one; publishing and promotion first check the
job's fencing lock (``worker.fence``), so an execution that no longer owns the job publishes
nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.datasets import DatasetError, load_dataset
from core.jobs import TrainJob
from core.model import InputScaling
from core.network import Network
from core.registry import PRODUCTION, UNCHECKED, AliasChanged, ModelRegistry, NoModelPublished, RegistryError
from trainer.evaluation import evaluate
from trainer.pipeline import dev_split, train_and_publish
from trainer.training import EpochReport, TrainingCanceled
from worker.context import get_context
from worker.fence import check_fence
from worker.payloads import accept
from worker.progress import JobReporter, peak_rss_mb

CURVE_IN_META = 1000  # epochs; about 150 bytes each


def find_version_of_job(registry: ModelRegistry, name: str, job_id: str) -> int | None:
    for version in reversed(registry.versions(name)):
        if registry.manifest(name, version).get("job_id") == job_id:
            return version
    return None


class _OncePerJobRegistry(ModelRegistry):
    """The registry as ``train_and_publish`` sees it in a job: publishing checks the job's lock
    first (a fenced-off execution publishes nothing) and, under that lock, whether an earlier
    execution of the same job already published a version, which is then returned instead."""

    def __init__(self, root: Path, job_id: str) -> None:
        super().__init__(root)
        self.job_id = job_id

    def publish_version(self, name: str, network: Network, manifest: dict[str, Any],
                        scaling: InputScaling | None = None) -> int:
        check_fence()
        existing = find_version_of_job(self, name, self.job_id)
        if existing is not None:
            return existing
        return super().publish_version(name, network, manifest, scaling)


def _beats(new: dict[str, float], old: dict[str, float]) -> bool:
    """Higher dev accuracy wins; on a tie the lower dev loss does."""
    if new["accuracy"] != old["accuracy"]:
        return new["accuracy"] > old["accuracy"]
    return new["loss"] < old["loss"]


def _production_class_names(registry: ModelRegistry, name: str) -> list[str] | None:
    """The class names of ``name``'s production version, which a retrained version keeps (a
    Fashion-MNIST model stays "T-shirt/top", ...); None for a new model or one without names."""
    try:
        return registry.manifest(name, registry.resolve(name)).get("class_names")
    except RegistryError:
        return None


def retrain(job_id: str, **arguments: Any) -> dict[str, Any]:
    """The RQ job: ``arguments`` are the other fields of a ``TrainJob`` (data, config, promote, dev_fraction,
    model, dev_data). The new version goes into ``model``, the worker's default model when the job names
    none; with ``dev_data`` it trains on every row of ``data`` and evaluates on ``dev_data``."""
    context = get_context()
    reporter = JobReporter(context.redis, job_id)
    job = accept(TrainJob, reporter, job_id, arguments)
    registry, name = context.registry, job.model or context.settings.model_name
    data, train_config, promote, dev_fraction = job.data, job.config, job.promote, job.dev_fraction
    dev_data = job.dev_data
    reporter.check_canceled()

    version = find_version_of_job(registry, name, job_id)
    if version is None:
        reporter.update(0.0, "loading data")

        # Grows per epoch in the meta, so a watcher can draw it live; the meta is rewritten every
        # epoch, so it holds the latest CURVE_IN_META epochs (the manifest keeps the whole curve).
        curve: list[dict[str, Any]] = []

        def on_epoch(report: EpochReport) -> None:
            if reporter.canceled():
                raise TrainingCanceled()
            curve.append(report.as_dict())
            accuracy = "" if report.dev_accuracy is None else f", dev accuracy {report.dev_accuracy:.4f}"
            reporter.update(0.95 * report.epoch / report.epochs, f"epoch {report.epoch}/{report.epochs}{accuracy}",
                            epoch=report.epoch, epochs=report.epochs, last_epoch=curve[-1],
                            curve=curve[-CURVE_IN_META:])

        try:
            published = train_and_publish(_OncePerJobRegistry(registry.root, job_id), name, data, train_config,
                                          dev_data=dev_data, dev_fraction=dev_fraction, on_epoch=on_epoch,
                                          extra_manifest={"job_id": job_id},
                                          class_names=job.class_names or _production_class_names(registry, name))
        except TrainingCanceled:
            raise reporter.fail("canceled by request; nothing was published") from None
        except (DatasetError, ValueError) as exc:
            message = str(exc).replace(data, "the training data")
            raise reporter.fail(message.replace(dev_data, "the dev data") if dev_data else message) from None
        version = published.version
    reporter.update(0.96, f"published version {version}; deciding promotion", produced_version=version)

    manifest = registry.manifest(name, version)
    new_metrics = {"accuracy": manifest["metrics"]["dev_accuracy"], "loss": manifest["metrics"]["dev_loss"]}
    splits = manifest.get("dataset", {})
    summary: dict[str, Any] = {"model": name, "produced_version": version, "dev": new_metrics, "promote": promote,
                               "train_rows": splits.get("train", {}).get("rows"),
                               "dev_rows": splits.get("dev", {}).get("rows")}
    if "test_accuracy" in manifest["metrics"]:  # reported, never used to decide
        summary["test"] = {"accuracy": manifest["metrics"]["test_accuracy"], "loss": manifest["metrics"]["test_loss"]}
        summary["test_rows"] = splits["test"]["rows"]
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
        # Same dev rows for both: the dev dataset (without reading the training data again), or the
        # dev rows of the training file exactly as the trainer split it (never its test split).
        dev_set = load_dataset(dev_data) if dev_data else dev_split(data, dev_fraction)
        report = evaluate(context.predictor.get(version=production, model=name), dev_set)
        old_metrics = {"accuracy": report["accuracy"], "loss": report["loss"]}
        summary["production_version"], summary["production_dev"] = production, old_metrics
        promoted = _beats(new_metrics, old_metrics)
        reason = (f"dev accuracy {new_metrics['accuracy']:.4f} vs production v{production} "
                  f"{old_metrics['accuracy']:.4f}")
        expected = current_alias
    if promoted and production != version:
        check_fence()  # after the (slow) evaluation: only the execution that still owns the job promotes
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
