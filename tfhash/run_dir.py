"""The run directory of a training run: what is in it, and when a command may continue it.

    runs/<name>/
      flags.json, flags.cfg     the settings (flags.cfg reruns the same run)
      changes.json              settings changed when the run was resumed or extended
      split/                    train/val/query/database/unlabeled indices + protocol.json
      checkpoints/best.keras    best validation MAP (best.keras.json: which epoch); with a frozen
                                backbone the whole network, its head from best_head.keras
      features/                 cached backbone features (--freeze_backbone)
      checkpoints/latest.keras  the last completed epoch, with the optimizer state: the state
                                a run resumes from (latest.keras.json: how many epochs)
      logs/                     TensorBoard
      history.csv               every loss term and val_map per epoch
      codes/                    query/database codes, labels, relaxed codes
      metrics.json              the final report (its presence: the run is finished)
      finished_at_<n>/          metrics.json and codes/ of a run later extended past n epochs

The rules, in :meth:`RunDir.open`:

* A directory where no epoch has completed holds nothing worth keeping: whatever a failed
  start left (flags, a split, empty checkpoint folders) is replaced by the new command's, so a
  corrected command always goes through.
* A started run continues only under the same settings. Settings that change how long or how
  a run learns, not what it is (:data:`RESUMABLE`: epochs, learning rate, momentum, weight
  decay, how often to validate, verbosity, the strategy), may differ; each change is appended to
  ``changes.json`` with the epoch it took effect at.
* A finished run is reported, not retrained; asked for more epochs than it has, it is
  extended: its report and codes move to ``finished_at_<n>/`` and training continues.
* A directory holding anything that is not a tfhash run is refused, never written into.
"""

import json
import os
import shutil
import time

from tfhash.errors import UsageError

# Settings that may change when a run is resumed or extended: how long or how it learns, on
# how many devices (--strategy: the same step on any number of replicas, tfhash.trainer), or
# how loudly it reports. A lower --learning_rate after a NaN loss is the common case.
RESUMABLE = ("epochs", "learning_rate", "momentum", "weight_decay", "eval_every", "strategy",
             "eval_batch_size", "verbose")

# Everything tfhash writes in a run directory (a run of an older version wrote backup/).
_OWN_ENTRIES = {"flags.json", "flags.cfg", "changes.json", "split", "checkpoints", "logs",
                "history.csv", "codes", "metrics.json", "backup", "shallow", "features",
                "cnnh_targets.npz"}


def completed_epochs(latest):
    """Epochs completed by the run whose latest checkpoint is ``latest``: the ``"epoch"`` that
    :class:`tfhash.callbacks.LatestCheckpoint` records in ``<latest>.json`` once the
    checkpoint is in place (0 where there is none)."""
    record = latest + ".json"
    if not (os.path.isfile(record) and os.path.isfile(latest)):
        return 0
    with open(record) as f:
        return int(json.load(f)["epoch"])


class RunDir:
    """The paths of a run directory and the state of the run in it."""

    def __init__(self, path):
        self.path = path
        join = lambda *parts: os.path.join(path, *parts)  # noqa: E731
        self.flags = join("flags.json")
        self.flagfile = join("flags.cfg")
        self.changes = join("changes.json")
        self.split = join("split")
        self.checkpoints = join("checkpoints")
        self.best = join("checkpoints", "best.keras")
        self.best_head = join("checkpoints", "best_head.keras")  # --freeze_backbone
        self.latest = join("checkpoints", "latest.keras")
        self.logs = join("logs")
        self.history = join("history.csv")
        self.codes = join("codes")
        self.metrics = join("metrics.json")

    def completed_epochs(self):
        """Epochs completed so far (0 for a run that has not finished one)."""
        return completed_epochs(self.latest)

    def open(self, settings):
        """Prepares the directory for a run with ``settings`` (a dict of every setting).

        Returns:
            ``(epochs_done, finished)``: the epochs the run has completed (0 for a new run)
            and whether it is finished (``metrics.json`` exists and no more epochs are asked
            for).

        Raises:
            UsageError: the path is a file, the directory holds something that is not a
                tfhash run, or a started run with settings that may not change.
        """
        entries = self._own_entries()
        done = self._epochs_done()
        if done == 0:
            self._clear(entries)  # what a start that failed before its first epoch left
            os.makedirs(self.checkpoints, exist_ok=True)
            return 0, False
        saved = self.saved_settings()
        self._refuse_changes(saved, settings, [k for k in settings if k not in RESUMABLE])
        finished = os.path.isfile(self.metrics)
        if finished and settings["epochs"] <= done:
            return done, True
        if finished:  # extended: keep the report of the shorter run
            keep = os.path.join(self.path, f"finished_at_{done}")
            os.makedirs(keep, exist_ok=True)
            for entry in (self.metrics, self.codes):
                if os.path.exists(entry):
                    os.replace(entry, os.path.join(keep, os.path.basename(entry)))
        changed = {k: [saved.get(k), settings[k]] for k in RESUMABLE
                   if k in settings and saved.get(k) != settings[k]}
        if changed:
            self._record_change(done, changed)
        return done, False

    def open_once(self, settings, keys):
        """Prepares the directory for a run made in one go (a shallow method's fit).

        Returns:
            True if the directory holds this run finished (the same ``keys`` of
            ``settings``); False after clearing what an unfinished attempt left.

        Raises:
            UsageError: as :meth:`open`.
        """
        entries = self._own_entries()
        if os.path.isfile(self.metrics):
            self._refuse_changes(self.saved_settings(), settings, keys)
            return True
        self._clear(entries)
        os.makedirs(self.path, exist_ok=True)
        return False

    def _own_entries(self):
        """The entries of the directory; refuses a file or a directory with other files."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise UsageError(f"--run_dir={self.path} is a file; pass a directory")
        entries = set(os.listdir(self.path)) if os.path.isdir(self.path) else set()
        foreign = sorted(e for e in entries
                         if e not in _OWN_ENTRIES and not e.startswith("finished_at_"))
        if foreign:
            raise UsageError(f"--run_dir={self.path} holds no tfhash run but other files "
                             f"({', '.join(foreign[:3])}); pass a new or empty directory")
        return entries

    def _refuse_changes(self, saved, settings, keys):
        changed = [k for k in keys if saved.get(k) != settings.get(k)]
        if changed:
            diffs = ", ".join(f"--{k}={saved.get(k)!r} there vs {settings.get(k)!r} now"
                              for k in changed)
            raise UsageError(f"run directory {self.path} holds a run with other settings "
                             f"({diffs}); pass a new --run_dir, or the same flags to resume it")

    def _epochs_done(self):
        done = self.completed_epochs()
        if done and not os.path.isfile(self.flags):
            raise UsageError(f"{self.path} holds {done} trained epochs but no flags.json, so "
                             "its settings are unknown; restore flags.json, or pass a new "
                             "--run_dir")
        return done

    def _clear(self, entries):
        for entry in entries & _OWN_ENTRIES:
            path = os.path.join(self.path, entry)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)

    def saved_settings(self):
        with open(self.flags) as f:
            return json.load(f)

    def _record_change(self, epoch, changed):
        history = []
        if os.path.isfile(self.changes):
            with open(self.changes) as f:
                history = json.load(f)
        history.append({"from_epoch": epoch, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        "changed": changed})
        with open(self.changes, "w") as f:
            json.dump(history, f, indent=2)

    def write_settings(self, settings):
        """Writes ``flags.json`` and ``flags.cfg`` (a flagfile that reruns the same run)."""
        with open(self.flags, "w") as f:
            json.dump(settings, f, indent=2)
        with open(self.flagfile, "w") as f:
            for key, value in settings.items():
                if isinstance(value, dict):  # e.g. --shallow_params=anchors=500,sigma=2.5
                    value = ",".join(f"{k}={v}" for k, v in value.items()) or None
                if value is not None:
                    f.write(f"--{key}={str(value).lower() if isinstance(value, bool) else value}\n")
