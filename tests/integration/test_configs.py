"""configs/: every file reads through the train command's own flag parser with ``--bits`` on the
command line, describes a valid run, and every config a document or benchmark names exists."""

import glob
import json
import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT

CONFIGS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "configs", "*.cfg")))
# The configs that keep their own code length and run directory: the README's first commands
# (`python -m tfhash.train --flagfile=configs/quickstart.cfg`, word for word) and their kin.
COMPLETE = {"quickstart.cfg": 12, "images.cfg": 64, "miml_quickstart.cfg": 12}
# The configs other configs include, or that are added after one: no run directory of their own.
INCLUDED = {
    "cifar10_base.cfg",
    "cifar10_common.cfg",
    "cifar10_e2e_base.cfg",
    "cifar10_finetuned_base.cfg",
    "cifar10_pretrained_base.cfg",
    "paper_vgg16.cfg",
}

# Parses each config as `python -m tfhash.train --flagfile=configs/<name> --bits=24` does, in one
# process, and validates the settings (the data's location aside: the datasets are not here).
PARSE = """
import dataclasses, json, sys
from absl import flags
from tfhash import config, train
train.define_flags()
config.data.check_source = lambda dataset, data_dir=None: None
out = {}
for name in sys.argv[1:]:
    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS(["train", f"--flagfile=configs/{name}", "--bits=24"])
        settings = train.config_from_flags()
        run_dir = settings.run_dir
        dataclasses.replace(settings, run_dir=run_dir or "runs/x").validate()
        lines = open(f"configs/{name}").read().splitlines()
        own_rate = any(line.startswith("--learning_rate=") for line in lines)
        own_blocks = any(line.startswith("--trainable_blocks=") for line in lines)
        out[name] = dict(bits=settings.bits, method=settings.method, run_dir=run_dir,
                         margin=settings.margin,
                         own_rate=f"{settings.learning_rate:.0e}".replace("e-0", "e-") if own_rate else None,
                         own_blocks=settings.trainable_blocks if own_blocks else None)
    except Exception as e:
        out[name] = dict(error=f"{type(e).__name__}: {e}")
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def parsed():
    result = subprocess.run(
        [sys.executable, "-c", PARSE, *CONFIGS],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_one_config_per_method_and_protocol():
    assert 20 <= len(CONFIGS) <= 30
    assert not [name for name in CONFIGS if re.search(r"_(12|24|32|48)\.cfg$", name)]


def test_every_config_parses_and_validates_with_bits_on_the_command_line(parsed):
    errors = {name: result["error"] for name, result in parsed.items() if "error" in result}
    assert not errors
    assert set(parsed) == set(CONFIGS)
    for name, result in parsed.items():
        # --bits after the flagfile wins, as the README's commands rely on.
        assert result["bits"] == 24, name
        if name in COMPLETE:
            assert result["run_dir"] == f"runs/{name[:-4]}", name
        elif name in INCLUDED:
            assert result["run_dir"] is None, name
        else:
            # A method's config names its run directory after itself and the code length
            # (runs/<config>_{bits}): two lengths never share one, and --bits alone suffices.
            # One that sets its own learning rate (or trainable blocks) adds it as the fine-tuned
            # table names its runs (_lr3e-4_12blocks), so the table reports that run rather than
            # train it again.
            rate = f"_lr{result['own_rate']}" if result["own_rate"] else ""
            blocks = f"_{result['own_blocks']}blocks" if result["own_blocks"] else ""
            assert result["run_dir"] == f"runs/{name[:-4]}_24{rate}{blocks}", name


def test_the_run_directory_follows_bits_and_an_explicit_one_wins():
    """``{bits}`` in a config's run_dir is expanded once, in TrainConfig, to the --bits of the
    command line; a --run_dir after the flagfile replaces it."""
    from tfhash.config import TrainConfig

    assert TrainConfig(run_dir="runs/x_{bits}", bits=12).run_dir == "runs/x_12"
    assert TrainConfig(run_dir="runs/x", bits=12).run_dir == "runs/x"
    script = (
        "from absl import flags; from tfhash import train; train.define_flags(); "
        "flags.FLAGS(['train', '--flagfile=configs/cifar10_lsdh.cfg', '--bits=32', *{}]); "
        "print(train.config_from_flags().run_dir)"
    )
    for extra, expected in (([], "runs/cifar10_lsdh_32"), (["--run_dir=runs/mine"], "runs/mine")):
        result = subprocess.run(
            [sys.executable, "-c", script.format(extra)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip().splitlines()[-1] == expected


def test_a_method_config_trains_the_method_in_its_name(parsed):
    from tfhash import methods

    for name, result in parsed.items():
        match = re.fullmatch(r"cifar10_(.+?)(_pretrained|_finetuned|_e2e)?\.cfg", name)
        if match and match.group(1) in methods.REGISTRY:
            assert result["method"] == match.group(1), name


def test_the_margin_is_left_to_the_loss(parsed):
    """K/2 is the ranking losses' default: no config types it per code length. The quickstart
    keeps the m = 1 it has always trained with."""
    assert {name: r["margin"] for name, r in parsed.items() if r["margin"] is not None} == {
        "quickstart.cfg": 1.0
    }
    for name in COMPLETE:
        with open(os.path.join(ROOT, "configs", name)) as f:
            assert f"--bits={COMPLETE[name]}\n" in f.read()


def test_every_config_a_document_or_benchmark_names_exists():
    named = set()
    paths = [
        os.path.join(ROOT, "README.md"),
        *glob.glob(os.path.join(ROOT, "docs", "*.md")),
        *glob.glob(os.path.join(ROOT, "benchmarks", "*.py")),
        *glob.glob(os.path.join(ROOT, "tests", "**", "*.py"), recursive=True),
        *glob.glob(os.path.join(ROOT, "configs", "*.cfg")),
    ]
    for path in paths:
        with open(path) as f:
            for config in re.findall(r"configs/([A-Za-z0-9_]+\.cfg)", f.read()):
                named.add((config, os.path.relpath(path, ROOT)))
    missing = sorted((config, where) for config, where in named if config not in CONFIGS)
    assert not missing
    assert len(named) > 10
