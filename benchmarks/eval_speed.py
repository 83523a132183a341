"""Speed and peak memory of the NumPy Hamming evaluator, against argsort-per-query references.

MAP over the whole ranking (MAP@ALL) at

    (a) 10,000 queries x    50,000 database items x 48 bits
    (b) 10,000 queries x 1,000,000 database items x 64 bits

for ``ties="average"`` (the default) and ``ties="index"``. Each is compared with
a reference written here the way public code writes it, one query at a time:
a matrix product for the Hamming distances and ``np.argsort`` of them, then

* for ``index``: AP over the sorted relevance, as DeepHash-style ``CalcTopMap``
  (with a stable argsort, so that tied items stay in database order);
* for ``average``: the same sort, then each tie group's expected precision sum
  (McSherry and Najork) with a table of harmonic numbers.

The references are timed on the first ``--reference_queries`` queries and
scaled linearly to all queries (they cost the same per query); the evaluator
is checked to give the same MAP on those queries (to 1e-9). For context the
time of the field's exact code (``np.argsort`` default quicksort, arbitrary tie
order) is printed too.

Every measurement runs in a fresh child process; peak memory is that
process's peak resident set size (``resource.getrusage(...).ru_maxrss``),
which includes Python, NumPy, SciPy and the input arrays, and is also given
minus the peak before the evaluator ran.

    python benchmarks/eval_speed.py                  # both cases (minutes)
    python benchmarks/eval_speed.py --case=a --reference_queries=500
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

CASES = {"a": (10_000, 50_000, 48), "b": (10_000, 1_000_000, 64)}
NUM_CLASSES = 10
FLIP = 0.2  # each bit of a class's centre code flips with this probability


def make_data(num_queries, num_items, bits, seed=0):
    """Class-structured ±1 int8 codes (a class centre with random bit flips) and class ids."""
    rng = np.random.default_rng(seed)
    centres = rng.random((NUM_CLASSES, bits)) < 0.5

    def codes(n):
        labels = rng.integers(0, NUM_CLASSES, n)
        out = np.empty((n, bits), np.int8)
        for start in range(0, n, 8192):  # blockwise: no large float temporaries
            block = slice(start, start + 8192)
            flips = rng.random((len(out[block]), bits)) < FLIP
            out[block] = np.where(centres[labels[block]] ^ flips, 1, -1)
        return out, labels

    return codes(num_queries) + codes(num_items)


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reference_map(query_codes, query_labels, db_codes, db_labels, ties, sort_kind):
    """MAP@ALL one query at a time with np.argsort, as public deep-hashing code does."""
    bits = db_codes.shape[1]
    database = db_codes.astype(np.float32)
    harmonic = np.r_[0.0, np.cumsum(1.0 / np.arange(1, len(db_codes) + 1))]
    total = 0.0
    for q in range(len(query_codes)):
        hamm = 0.5 * (bits - database @ query_codes[q].astype(np.float32))
        order = np.argsort(hamm, kind=sort_kind)
        gnd = (db_labels == query_labels[q])[order]
        if ties == "index":
            tsum = int(gnd.sum())
            count = np.linspace(1, tsum, tsum)
            tindex = np.flatnonzero(gnd) + 1.0
            total += np.mean(count / tindex)
            continue
        # Expected precision sum of each tie group: size n, r relevant, b ranked before.
        ranked = hamm[order]
        starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
        n = np.diff(np.r_[starts, len(ranked)]).astype(np.float64)
        r = np.add.reduceat(gnd.astype(np.float64), starts)
        b = starts
        gap = harmonic[b + n.astype(np.int64)] - harmonic[b]
        pairs = np.divide(r * (r - 1), n * (n - 1), out=np.zeros_like(n), where=n > 1)
        hits_before = np.cumsum(r) - r
        total += ((r / n) * (hits_before + 1) * gap + pairs * (n - (b + 1) * gap)).sum() / r.sum()
    return total / len(query_codes)


def child(case, mode, ties, reference_queries):
    """One measurement; prints a JSON line."""
    from tfhash import evaluation

    num_queries, num_items, bits = CASES[case]
    query_codes, query_labels, db_codes, db_labels = make_data(num_queries, num_items, bits)
    result = {"case": case, "mode": mode, "ties": ties}
    if mode == "ours":
        # The compiled counting loop is built on its first call (then cached on disk): a
        # one-off cost per machine, timed apart from the measurement.
        warmup = time.perf_counter()
        evaluation.mean_average_precision(
            query_codes[:2], query_labels[:2], db_codes[:100], db_labels[:100], ties=ties
        )
        result["warmup"] = time.perf_counter() - warmup
    result["inputs_peak_mb"] = peak_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    if mode == "ours":
        result["map"] = evaluation.mean_average_precision(
            query_codes, query_labels, db_codes, db_labels, ties=ties
        )
        result["wall"], result["cpu"] = time.perf_counter() - wall, time.process_time() - cpu
        result["peak_mb"] = peak_mb()
    else:
        subset = slice(0, reference_queries)
        # Tie order matters only for "index", which needs the stable sort.
        sort_kind = "stable" if mode == "reference" and ties == "index" else "quicksort"
        expected = reference_map(
            query_codes[subset], query_labels[subset], db_codes, db_labels, ties, sort_kind
        )
        scale = num_queries / reference_queries  # scaled to all queries
        result["wall"] = (time.perf_counter() - wall) * scale
        result["cpu"] = (time.process_time() - cpu) * scale
        result["map_on_subset"] = expected
        if mode == "reference":
            ours = evaluation.mean_average_precision(
                query_codes[subset], query_labels[subset], db_codes, db_labels, ties=ties
            )
            result["abs_difference_to_ours"] = abs(ours - expected)
    print(json.dumps(result))


def run_child(*args):
    command = [sys.executable, os.path.abspath(__file__), "--child", *map(str, args)]
    # One thread everywhere (the references' BLAS included): CPU time compares like with like.
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def seconds(result):
    return f"{result['cpu']:8.2f} s CPU ({result['wall']:8.2f} s wall)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=["a", "b", "all"], default="all")
    parser.add_argument(
        "--reference_queries",
        type=int,
        default=None,
        help="queries the references run on (default 1000 for a, 50 for b)",
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, mode, ties, reference_queries = args.child
        return child(case, mode, ties, int(reference_queries))

    print(f"load average at start: {os.getloadavg()}")
    for case in ["a", "b"] if args.case == "all" else [args.case]:
        num_queries, num_items, bits = CASES[case]
        reference_queries = args.reference_queries or {"a": 1000, "b": 50}[case]
        print(
            f"\n({case}) {num_queries:,} queries x {num_items:,} items x {bits} bits, "
            f"references timed on {reference_queries} queries and scaled"
        )
        field = run_child(case, "field", "index", reference_queries)
        print(f"  field code (quicksort argsort, arbitrary tie order): {seconds(field)}")
        for ties in ["average", "index"]:
            ours = run_child(case, "ours", ties, 0)
            reference = run_child(case, "reference", ties, reference_queries)
            print(
                f"  ties={ties}:\n"
                f"    evaluator {seconds(ours)} after a {ours['warmup']:.2f} s first call "
                f"(compiling or loading the counting loop), MAP {ours['map']:.4f}, peak RSS "
                f"{ours['peak_mb']:.0f} MB ({ours['peak_mb'] - ours['inputs_peak_mb']:.0f} MB "
                f"over the peak before it ran)\n"
                f"    reference {seconds(reference)}, |MAP difference| on its queries "
                f"{reference['abs_difference_to_ours']:.1e}\n"
                f"    speed-up (CPU) {reference['cpu'] / ours['cpu']:.1f}x over the reference, "
                f"{field['cpu'] / ours['cpu']:.1f}x over the field code; wall "
                f"{reference['wall'] / ours['wall']:.1f}x over the reference"
            )
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
