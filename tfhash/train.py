r"""Trains a deep hashing network: ``python -m tfhash.train --flagfile=configs/<name>.cfg``.

    flagfile + --flag overrides ─► TrainConfig (tfhash.config) ─► tfhash.training.run.train
      ─► run_dir: split, checkpoints, history, codes, metrics.json

Every setting is a field of :class:`tfhash.config.TrainConfig`, written once: its default, its
help text and whether a resumed run may change it; the command's flags are made from those
fields. Any flag can be overridden after the flagfile, e.g. ``--bits=12 --run_dir=runs/x``.
The run itself (data, model, fit, report) is :func:`tfhash.training.run.train`; how a run
directory is resumed, extended or refused is in :mod:`tfhash.training.run_dir`.

The names a Python caller used from this module stay here: ``TrainConfig``, ``train``,
``TrainingStopped``, ``learning_rate_schedule``, ``multi_worker_chief``, ``parse_arguments``.
"""

import sys

from tfhash import cli
from tfhash.config import (
    TrainConfig,
    config_from_flags,
    define_flags,
    multi_worker_chief,
    parse_arguments,
)
from tfhash.errors import UsageError
from tfhash.training.run import TrainingStopped, learning_rate_schedule, train


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments {argv[1:]}: every setting is a --flag")
    try:
        train(config_from_flags())
    except TrainingStopped as e:  # named as the library names it: as this command's flags
        print(f"error: {cli.as_flags(str(e), TrainConfig.defaults())}", file=sys.stderr)
        sys.exit(1)


__all__ = [
    "TrainConfig",
    "TrainingStopped",
    "config_from_flags",
    "define_flags",
    "learning_rate_schedule",
    "main",
    "multi_worker_chief",
    "parse_arguments",
    "train",
]

if __name__ == "__main__":
    cli.run(
        main,
        define_flags,
        interrupted="interrupted (Ctrl-C); the run directory keeps every "
        "completed epoch: run the same command again to resume",
    )
