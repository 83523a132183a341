"""The run directory of a training run: what is in it, and when a command may continue it.

    runs/<name>/
      flags.json, flags.cfg     the settings (flags.cfg reruns the same run)
      changes.json              settings changed when the run was resumed or extended
      split/                    train/val/query/database/unlabeled indices + protocol.json
      checkpoints/best.keras    best validation MAP (best.keras.json: which epoch); with a frozen
                                backbone the whole network, its head from best_head.keras
      features/                 cached backbone features (--freeze_backbone)
      checkpoints/latest.keras  the last completed epoch, with the optimizer and random state:
                                the state a run resumes from; the epoch is recorded inside it
                                (CHECKPOINT_RECORD), latest.keras.json repeats it
      logs/                     TensorBoard
      history.csv               every loss term and val_map per epoch
      codes/                    query/database codes, labels, relaxed codes
      metrics.json              the final report (its presence: the run is finished)
      finished_at_<n>/          metrics.json and codes/ of a run later extended past n epochs
      lock                      held by the command writing the run (tfhash.locking)

The rules, in :meth:`RunDir.lock` and :meth:`RunDir.open`:

* One command at a time: it holds the directory's lock, and a second is refused, naming it.
* A directory where no epoch has completed holds nothing worth keeping: whatever a failed
  start left (flags, a split, empty checkpoint folders) is replaced by the new command's, so a
  corrected command always goes through.
* A started run continues only under the same settings. Settings that change how long or how
  a run learns, not what it is (the ``resumable`` ones, which the caller names:
  :meth:`tfhash.config.TrainConfig.resumable` — epochs, learning rate, momentum, weight decay,
  how often to validate, verbosity, the strategy), may differ; each change is appended to
  ``changes.json`` with the epoch it took effect at.
* A finished run is reported, not retrained; asked for more epochs than it has, it is
  extended: its report and codes move to ``finished_at_<n>/`` and training continues.
* A directory holding anything that is not a tfhash run is refused, never written into; so is
  a run whose files are damaged or missing (flags.json, the latest checkpoint, metrics.json),
  named with the fix. Where it is does not matter: a moved run directory resumes.
"""

import contextlib
import json
import os
import shutil
import time
import zipfile

from tfhash import methods
from tfhash.errors import UsageError
from tfhash.locking import DirectoryLock

# Settings that say where the run is, not what it is: a moved or copied run directory resumes.
LOCATION = ("run_dir",)

LOCK = "lock"  # held by the command writing the run (tfhash.locking)
# Everything tfhash writes in a run directory (a run of an older version wrote backup/), but
# the files a method's own steps keep there (tfhash.methods.Method.run_dir_files).
_OWN_ENTRIES = {
    "flags.json",
    "flags.cfg",
    "changes.json",
    "split",
    "checkpoints",
    "logs",
    "history.csv",
    "codes",
    "metrics.json",
    "backup",
    "shallow",
    "features",
    LOCK,
}


def own_entries():
    """The names tfhash writes at the top of a run directory, the methods' own files included."""
    return _OWN_ENTRIES | methods.run_dir_files()


# The record inside a latest checkpoint (a .keras file is a zip archive; Keras reads only its
# own entries): the epochs completed and the random state of the run at that moment. Written
# into the file before it is renamed into place, so the weights, the optimizer state and the
# epoch they belong to change together, in one rename.
CHECKPOINT_RECORD = "tfhash_checkpoint.json"


@contextlib.contextmanager
def atomic_path(path, partial=None):
    """Yields the name to write ``path``'s new content to (``partial``, by default ``path +
    ".partial"``) and renames it into place when the block ends: a reader, or a kill at any
    moment, sees the old file or the new one, never a part; a block that fails (a full disk)
    leaves no partial file."""
    partial = partial or path + ".partial"
    try:
        yield partial
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise


def write_json(path, value, indent=None):
    """Writes ``value`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as partial, open(partial, "w") as f:
        json.dump(value, f, indent=indent)


def read_json(path, fix):
    """The JSON value in ``path``, or a one-line :class:`UsageError` saying it is damaged and
    ``fix``."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise UsageError(f"{path} is damaged ({type(e).__name__}: {str(e)[:100]}); {fix}") from None


def checkpoint_record(latest):
    """The record inside the checkpoint ``latest`` (``{"epoch", "random_state"}``), or ``None``
    for a checkpoint written before it had one. Every entry of the archive is read and its
    checksum checked, so a damaged file is refused here, before anything is written.

    Raises:
        UsageError: the file is not a complete zip archive (truncated, overwritten).
    """
    fix = (
        "it cannot be resumed from: restore the file, or pass a new `run_dir` (the run's "
        "best.keras can still be exported)"
    )
    try:
        with zipfile.ZipFile(latest) as archive:
            damaged = archive.testzip()
            if damaged is not None:
                raise zipfile.BadZipFile(f"bad CRC in {damaged}")
            if CHECKPOINT_RECORD not in archive.namelist():
                return None
            record = json.loads(archive.read(CHECKPOINT_RECORD))
        int(record["epoch"])
        return record
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError, EOFError) as e:
        raise UsageError(
            f"{latest} is damaged ({type(e).__name__}: {str(e)[:100]}); {fix}"
        ) from None


def completed_epochs(latest):
    """Epochs completed by the run whose latest checkpoint is ``latest``: the epoch recorded
    inside it (:data:`CHECKPOINT_RECORD`), or for an older checkpoint the ``"epoch"`` of
    ``<latest>.json``; 0 where there is no checkpoint.

    Raises:
        UsageError: the checkpoint is damaged, or is an older one whose ``<latest>.json`` is
            missing or damaged.
    """
    if not os.path.isfile(latest):
        return 0
    record = checkpoint_record(latest)
    if record is None:  # written before the record was inside the checkpoint
        if not os.path.isfile(latest + ".json"):
            raise UsageError(
                f"{latest} does not say how many epochs it holds and "
                f"{latest}.json is missing; restore that file, or pass a new "
                "`run_dir`"
            )
        record = read_json(latest + ".json", "restore it, or pass a new `run_dir`")
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            raise UsageError(
                f"{latest}.json does not say how many epochs the checkpoint "
                "holds; restore it, or pass a new `run_dir`"
            )
    return int(record["epoch"])


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

    def lock(self):
        """The lock a command holds while it writes this run (a context manager): a second
        command on the same directory is refused with one line naming the first (pid, host,
        command, since when); a killed holder's lock is released by the operating system.
        Creates the directory; refuses a file, or a directory holding other files, first."""
        self._own_entries()
        os.makedirs(self.path, exist_ok=True)
        return DirectoryLock(
            os.path.join(self.path, LOCK),
            f"run directory {self.path}",
            "wait for that command to finish (or stop it), or pass another `run_dir`",
        ).acquire()

    def completed_epochs(self):
        """Epochs completed so far (0 for a run that has not finished one)."""
        return completed_epochs(self.latest)

    def checkpoint_record(self):
        """The record inside the latest checkpoint (see :data:`CHECKPOINT_RECORD`), or None."""
        return checkpoint_record(self.latest) if os.path.isfile(self.latest) else None

    def open(self, settings, defaults=None, resumable=()):
        """Prepares the directory for a run with ``settings`` (a dict of every setting).

        A setting that a run made by an earlier version did not record counts as its value in
        ``defaults`` (the setting's default today, which is what that version did), so such a
        run still resumes. The settings named in ``resumable`` may differ from the run's; any
        other change is refused.

        Returns:
            ``(epochs_done, finished)``: the epochs the run has completed (0 for a new run)
            and whether it is finished (``metrics.json`` exists and no more epochs are asked
            for).

        Raises:
            UsageError: the path is a file, the directory holds something that is not a
                tfhash run, a started run with settings that may not change, or a run whose
                files are damaged or missing (named, with the fix): never cleared.
        """
        entries = self._own_entries()
        done = self._epochs_done()
        if done == 0:
            self._clear(entries)  # what a start that failed before its first epoch left
            os.makedirs(self.checkpoints, exist_ok=True)
            return 0, False
        saved = {**(defaults or {}), **self.saved_settings()}
        self._refuse_changes(
            saved, settings, [k for k in settings if k not in (*resumable, *LOCATION)]
        )
        finished = os.path.isfile(self.metrics)
        if finished:
            read_json(
                self.metrics,
                "remove it and run the same command again: the run is "
                "not trained again, its report is written anew",
            )
        if finished and settings["epochs"] <= done:
            return done, True
        if finished:  # extended: keep the report of the shorter run
            keep = os.path.join(self.path, f"finished_at_{done}")
            os.makedirs(keep, exist_ok=True)
            for entry in (self.metrics, self.codes):
                if os.path.exists(entry):
                    os.replace(entry, os.path.join(keep, os.path.basename(entry)))
        changed = {
            k: [saved.get(k), settings[k]]
            for k in resumable
            if k in settings and saved.get(k) != settings[k]
        }
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
            self._refuse_changes(
                self.saved_settings(), settings, [k for k in keys if k not in LOCATION]
            )
            read_json(self.metrics, "remove it and run the same command again")
            return True
        self._clear(entries)
        os.makedirs(self.path, exist_ok=True)
        return False

    def _own_entries(self):
        """The entries of the directory; refuses a file or a directory with other files."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise UsageError(f"run_dir={self.path} is a file; pass a directory")
        entries = set(os.listdir(self.path)) if os.path.isdir(self.path) else set()
        foreign = sorted(
            e for e in entries if e not in own_entries() and not e.startswith("finished_at_")
        )
        if foreign:
            raise UsageError(
                f"run_dir={self.path} holds no tfhash run but other files "
                f"({', '.join(foreign[:3])}); pass a new or empty directory"
            )
        return entries

    def _refuse_changes(self, saved, settings, keys):
        changed = [k for k in keys if saved.get(k) != settings.get(k)]
        if changed:
            diffs = ", ".join(
                f"{k}={saved.get(k)!r} there vs {settings.get(k)!r} now" for k in changed
            )
            raise UsageError(
                f"run directory {self.path} holds a run with other settings "
                f"({diffs}); pass a new `run_dir`, or the same settings to resume it"
            )

    def _epochs_done(self):
        done = self.completed_epochs()
        if done and not os.path.isfile(self.flags):
            raise UsageError(
                f"{self.path} holds {done} trained epochs but no flags.json, so "
                "its settings are unknown; restore flags.json, or pass a new "
                "`run_dir`"
            )
        if not done:
            evidence = self._completed_epoch_evidence()
            if evidence:
                raise UsageError(
                    f"{self.path} holds a run that completed epochs ({evidence}) "
                    f"but its {os.path.relpath(self.latest, self.path)} is "
                    "missing, so it cannot be resumed; restore it, or pass a new "
                    "`run_dir` (nothing here was changed)"
                )
        else:
            try:
                described = read_json(self.latest + ".json", "").get("epoch")
            except (UsageError, AttributeError):  # missing or damaged
                described = None
            if described != done:  # the description lags behind its checkpoint, or is lost
                write_json(self.latest + ".json", {"epoch": done})
        return done

    def _completed_epoch_evidence(self):
        """What shows that an epoch completed here, in a directory without a latest
        checkpoint; "" where nothing does (a start that failed before its first epoch: what
        it wrote before then, a history row or a best checkpoint of epoch 1 included, may go)."""
        found = [
            name
            for name in ("checkpoints/latest.keras.json", "metrics.json", "changes.json")
            if os.path.exists(os.path.join(self.path, name))
        ]
        if os.path.isdir(self.path):
            found += sorted(e for e in os.listdir(self.path) if e.startswith("finished_at_"))
        try:
            with open(self.history) as f:
                if any(
                    line.split(",")[0].strip() not in ("", "epoch", "0")
                    for line in f.read().splitlines()
                ):
                    found.append("history.csv rows after epoch 1")
        except OSError:
            pass
        return ", ".join(found)

    def _clear(self, entries):
        for entry in entries & own_entries() - {LOCK}:  # the lock is held by this command
            path = os.path.join(self.path, entry)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)

    def saved_settings(self):
        settings = read_json(
            self.flags, "restore it (flags.cfg holds the same settings), or pass a new `run_dir`"
        )
        if not isinstance(settings, dict):
            raise UsageError(f"{self.flags} holds no settings; restore it, or pass a new `run_dir`")
        return settings

    def _record_change(self, epoch, changed):
        history = []
        if os.path.isfile(self.changes):
            history = read_json(
                self.changes, "restore it, or remove it to keep no record of earlier changes"
            )
        history.append(
            {"from_epoch": epoch, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "changed": changed}
        )
        write_json(self.changes, history, indent=2)

    def write_settings(self, settings):
        """Writes ``flags.json`` and ``flags.cfg`` (a flagfile that reruns the same run),
        each atomically."""
        write_json(self.flags, settings, indent=2)
        lines = []
        for key, value in settings.items():
            if isinstance(value, dict):  # e.g. --shallow_params=anchors=500,sigma=2.5
                value = ",".join(f"{k}={v}" for k, v in value.items()) or None
            if value is not None:
                lines.append(
                    f"--{key}={str(value).lower() if isinstance(value, bool) else value}\n"
                )
        partial = self.flagfile + ".partial"
        try:
            with open(partial, "w") as f:
                f.writelines(lines)
            os.replace(partial, self.flagfile)
        except BaseException:
            if os.path.exists(partial):
                os.remove(partial)
            raise
