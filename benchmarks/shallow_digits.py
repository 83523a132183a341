"""MAP and fit time of the shallow methods (LSH, SH, ITQ, KSH, SDH) on digits, raw pixels.

scikit-learn's digits (1,797 8x8 images, bundled, no download) under the
``digits`` protocol (30 queries and 100 training images per class; 10% of the
training draw is held out as validation, as in a run, so the methods fit on
900 images) with the pixels themselves as features: 8 x 8 x 3 = 192 values in
[0, 255] (the grey channel repeated as RGB, as tfhash's collection holds it).
This is exactly what ``train_shallow`` computes with ``--backbone=pixels
--image_size=8``; here it runs with NumPy only, no TensorFlow.

MAP@ALL with tie-averaged ranking (tfhash.evaluation's default) over the 300
queries against the 1,497 database images, for several seeds (each seed draws
a new split and new random hyperplanes / rotations / anchors), and the
wall-clock fit time.

SDH's default of 1,000 anchors needs 1,000 training images; digits has 900,
so this uses ``--sdh_anchors`` (500) and says so.

    python benchmarks/shallow_digits.py                       # 32 bits, seeds 0,1,2
    python benchmarks/shallow_digits.py --bits=16 --seeds=0 --json=out.json
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfhash import data, evaluation, shallow  # noqa: E402


def run(bits, seeds, sdh_anchors, methods=tuple(shallow.METHODS)):
    collection = data.load_collection("digits")
    features = collection.pixels.reshape(len(collection), -1).astype(np.float32)
    params = {"sdh": {"anchors": sdh_anchors}}
    results = {name: {"map": [], "fit_seconds": [], "fit_cpu_seconds": []} for name in methods}
    for seed in seeds:
        split = data.make_split(collection, "digits", seed=seed, val_fraction=0.1)
        train_labels = collection.labels[split.train]
        for name in methods:
            model = shallow.get(name, bits=bits, seed=seed, **params.get(name, {}))
            start, cpu = time.perf_counter(), time.process_time()
            model.fit(features[split.train], train_labels if model.supervised else None)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            value = evaluation.mean_average_precision(
                model.encode(features[split.query]),
                collection.labels[split.query],
                model.encode(features[split.database]),
                collection.labels[split.database],
            )
            results[name]["map"].append(float(value))
            results[name]["fit_seconds"].append(seconds)
            results[name]["fit_cpu_seconds"].append(cpu)
            print(
                f"seed {seed} {name}: MAP {value:.4f}, fit {seconds:.2f} s ({cpu:.2f} s CPU)",
                file=sys.stderr,
            )
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--sdh_anchors", type=int, default=500)
    parser.add_argument(
        "--methods", default=",".join(shallow.METHODS), help="comma-separated methods"
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = run(args.bits, seeds, args.sdh_anchors, args.methods.split(","))

    print(
        f"digits, raw pixels (192-d), {args.bits} bits, seeds {args.seeds}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"NumPy {np.__version__}"
    )
    print("| method | labels | MAP@ALL (mean ± sd) | fit wall s (median) | fit CPU s (median) |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        supervised = "yes" if shallow.METHODS[name].supervised else "no"
        print(
            f"| {name.upper()} | {supervised} | {np.mean(r['map']):.4f} ± "
            f"{np.std(r['map']):.4f} | {np.median(r['fit_seconds']):.2f} | "
            f"{np.median(r['fit_cpu_seconds']):.2f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "bits": args.bits,
                    "seeds": seeds,
                    "sdh_anchors": args.sdh_anchors,
                    "results": results,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
