r"""Trains a deep hashing network: ``python -m tfhash.train --flagfile=configs/<name>.cfg``.

    flagfile + --flag overrides ─► TrainConfig (tfhash.config) ─► tfhash.training.run.train
      ─► run_dir: split, checkpoints, history, codes, metrics.json

Every setting is a field of :class:`tfhash.config.TrainConfig`, written once: its default, its
help text and whether a resumed run may change it; the command's flags are made from those
fields (:func:`define_flags`), and read back into one (:func:`config_from_flags`). Any flag can
be overridden after the flagfile, e.g. ``--bits=12 --run_dir=runs/x``. The run itself (data,
model, fit, report) is :func:`tfhash.training.run.train`; how a run directory is resumed,
extended or refused is in :mod:`tfhash.training.run_dir`.

The names a Python caller used from this module stay here: ``TrainConfig``, ``train``,
``TrainingStopped``, ``learning_rate_schedule``, ``multi_worker_chief``, ``parse_arguments``.
"""

import dataclasses
import os
import sys

from tfhash import cli, methods
from tfhash.config import TrainConfig, parse_arguments
from tfhash.errors import UsageError
from tfhash.training.cluster import multi_worker_chief
from tfhash.training.run import TrainingStopped, learning_rate_schedule, train


def define_flags():
    """Defines one absl flag per :class:`TrainConfig` field (its default and help); called by
    the command when it starts, so that importing this module leaves absl's global flags
    alone. Asked for help, ``--method`` lists every method's hyperparameters and defaults."""
    from absl import flags

    define = {
        str: flags.DEFINE_string,
        int: flags.DEFINE_integer,
        float: flags.DEFINE_float,
        bool: flags.DEFINE_boolean,
    }
    help_asked = any(arg.split("=")[0] in cli.HELP_ARGS for arg in sys.argv[1:])
    for field in dataclasses.fields(TrainConfig):
        help_text = field.metadata["help"]
        if field.name == "method" and help_asked:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            help_text += (
                " Their hyperparameters (--method_args, --shallow_params) and "
                "defaults:\n" + "\n".join(methods.hyperparameters())
            )
        if field.metadata["resumable"]:
            help_text += " (May change when the run is resumed.)"
        if field.metadata["choices"]:
            flags.DEFINE_enum(field.name, field.default, field.metadata["choices"], help_text)
        else:
            define[field.type](field.name, field.default, help_text)


def config_from_flags():
    """The :class:`TrainConfig` the parsed flags describe (flagfile and overrides applied)."""
    from absl import flags

    return TrainConfig(
        **{field.name: flags.FLAGS[field.name].value for field in dataclasses.fields(TrainConfig)}
    )


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
