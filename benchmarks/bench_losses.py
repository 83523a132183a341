"""Cost of the LSDH and triplet losses alone: mining + loss + gradient on one batch of codes.

    python benchmarks/bench_losses.py [--batch_size=128] [--classes=8] [--bits=48]

For a class-balanced batch (P classes × M images, B = P·M) of random relaxed codes,
prints for each loss configuration the number of mined tuples, the time of one
forward + backward pass of ``terms(...)["loss"]`` (median of ``--repeats``) inside a
``tf.function`` and, where the configuration supports it, with XLA, and the peak
extra resident memory of the first graph-mode pass, measured in a fresh process
(``ru_maxrss`` after the pass minus before it: an upper bound that includes
TensorFlow's allocator slack and the tracing).
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_integer("batch_size", 128, "B, images per batch.")
flags.DEFINE_integer("classes", 8, "P, classes per batch (M = B / P images each).")
flags.DEFINE_integer("bits", 48, "K, the code length.")
flags.DEFINE_integer("repeats", 20, "Timed passes per configuration; the median is reported.")
flags.DEFINE_string("one", None, "Internal: measure one configuration (JSON) and print JSON.")
FLAGS = flags.FLAGS

CONFIGS = [
    {"method": "lsdh", "mining": "random", "quadruplets_per_anchor": 64},
    {"method": "lsdh", "mining": "random", "quadruplets_per_anchor": 128},
    {"method": "lsdh", "mining": "random", "quadruplets_per_anchor": 256},
    {"method": "lsdh", "mining": "all"},
    {"method": "triplet", "mining": "random", "quadruplets_per_anchor": 128},
    {"method": "triplet", "mining": "all"},
]


def _max_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(config):
    """Times one configuration in this process; returns a dict of figures."""
    import numpy as np
    import tensorflow as tf

    import tfhash.losses

    method = config["method"]
    loss = tfhash.losses.get(method, seed=0, **{k: v for k, v in config.items() if k != "method"})
    rng = np.random.default_rng(0)
    labels = tf.constant(np.repeat(np.arange(FLAGS.classes), FLAGS.batch_size // FLAGS.classes))
    h = tf.Variable(np.tanh(rng.normal(size=(len(labels), FLAGS.bits))).astype(np.float32))

    def pass_():
        with tf.GradientTape() as tape:
            value = loss.terms(labels, h)["loss"]
        return value, tape.gradient(value, h)

    def median_ms(step):
        step()  # trace (and compile)
        times = []
        for _ in range(FLAGS.repeats):
            start = time.perf_counter()
            step()[1].numpy()
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)

    graph = tf.function(pass_)
    tf.function(lambda: loss.terms(labels[:8], h[:8])["loss"])()  # TensorFlow's start-up memory
    before = _max_rss_bytes()
    graph()
    peak = _max_rss_bytes() - before  # graph mode: XLA's compiler would dominate the figure
    xla_ms = median_ms(tf.function(pass_, jit_compile=True)) if loss.supports_jit else None
    tuples = len(loss.mine(loss.similarity(labels)))
    return dict(
        config, tuples=tuples, graph_ms=median_ms(graph), xla_ms=xla_ms, peak_mb=peak / 2**20
    )


def main(argv):
    del argv
    if FLAGS.one:
        print(json.dumps(measure(json.loads(FLAGS.one))))
        return
    print(
        f"B={FLAGS.batch_size} (P={FLAGS.classes} x M={FLAGS.batch_size // FLAGS.classes}), "
        f"K={FLAGS.bits}, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'method':8} {'mining':7} {'N':>4} {'tuples':>10} {'graph ms':>9} {'XLA ms':>7} "
        f"{'peak MB':>8} {'B/tuple':>8}"
    )
    for config in CONFIGS:
        out = (
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    f"--one={json.dumps(config)}",
                    f"--batch_size={FLAGS.batch_size}",
                    f"--classes={FLAGS.classes}",
                    f"--bits={FLAGS.bits}",
                    f"--repeats={FLAGS.repeats}",
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        r = json.loads(out)
        xla = "-" if r["xla_ms"] is None else f"{r['xla_ms']:.1f}"
        print(
            f"{r['method']:8} {r['mining']:7} {r.get('quadruplets_per_anchor', '-'):>4} "
            f"{r['tuples']:>10,} {r['graph_ms']:>9.1f} {xla:>7} {r['peak_mb']:>8.1f} "
            f"{r['peak_mb'] * 2**20 / max(r['tuples'], 1):>8.0f}"
        )


if __name__ == "__main__":
    app.run(main)
