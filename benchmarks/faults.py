r"""Kill -9 at random moments: does the next command resume exactly, with nothing lost?

    python benchmarks/faults.py [--quick] [--train_kills=20] [--index_kills=10] [--seed=0]
        [--epochs=3] [--steps=10] [--targets=train,faiss,milvus] [--out=faults.json]

Three targets, each first run once uninterrupted as the reference, then killed (SIGKILL, which
nothing in the process can catch or clean up after) at moments drawn uniformly over the
reference's wall-clock time, and run again with the same command. Where a command had finished
before its moment (the load of a shared machine changes how long it takes), the trial starts
again with a moment drawn within the time that run took (up to 4 attempts).

* **train**: the quickstart (``configs/quickstart.cfg``: LSDH, digits, random mining), shortened
  to ``--epochs`` x ``--steps`` with validation every epoch so that kills land in every phase
  (start-up, a step, validation, the checkpoints, the final report). *Exact*: the rerun exits 0
  and the run directory equals the reference bit for bit: the latest checkpoint's weights,
  optimizer state and random state, every value of history.csv, the query and database codes
  and metrics.json (but its wall-clock ``train_seconds``).
* **faiss**: ``python -m tfhash.index`` appending 1,000,000 48-bit codes to an index of
  1,000,000 and deleting 5,000 of those in the same command. *Exact*: after the kill the index reads as the
  state before the command or after it, never another; the rerun (where it was before) gives
  the reference index (ids, codes, paths in order).
* **milvus**: the same on a Milvus Lite file of 50,000 items, alternately a ``--delete`` of
  12,500 ids and an append of 50,000. *Exact*: after the kill the manifest's size, the rows a
  search sees and the top-100 of 20 queries are those of the state before or after the
  command; after the rerun, those of the reference.

``--quick``: 3 kills of each (a minute or two, most of it TensorFlow starting). Prints one line
per kill and the counts; ``--out`` also writes them as JSON.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load():
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def killed_at(command, moment):
    """Runs ``command``, SIGKILLs it ``moment`` seconds in (its process group: a Milvus Lite
    server it started too). Returns ``None`` if it was killed, else the seconds it took."""
    started = time.time()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        process.wait(timeout=moment)
        return time.time() - started
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None


def kill_while_running(command, seconds, rng, prepare, attempts=4):
    """Prepares the target and kills ``command`` at a moment drawn uniformly in ``[0,
    seconds)``; where it had already finished (the machine's load changes how long a run
    takes), prepares it again and draws within the time it took. Returns ``(moment, killed,
    seconds)``: the last moment drawn, whether the command was killed while running, and the
    duration the next draw should use."""
    for _ in range(attempts):
        prepare()
        moment = float(rng.uniform(0, seconds))
        took = killed_at(command, moment)
        if took is None:
            return moment, True, seconds
        seconds = took
    return moment, False, seconds


def run(command, timeout=1800):
    started = time.time()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return result, time.time() - started


# ---------------------------------------------------------------------------------------------
# Training.


def run_state(run_dir):
    """Everything a run directory holds that must not differ from the uninterrupted run."""
    import h5py

    state = {}
    with zipfile.ZipFile(os.path.join(run_dir, "checkpoints", "latest.keras")) as archive:
        state["record"] = archive.read("tfhash_checkpoint.json")
        with archive.open("model.weights.h5") as f, h5py.File(f, "r") as weights:
            weights.visititems(
                lambda name, item: (
                    state.__setitem__("weights/" + name, item[()].tobytes())
                    if isinstance(item, h5py.Dataset)
                    else None
                )
            )
    with open(os.path.join(run_dir, "history.csv")) as f:
        state["history"] = f.read()
    for name in sorted(os.listdir(os.path.join(run_dir, "codes"))):
        state["codes/" + name] = np.load(os.path.join(run_dir, "codes", name)).tobytes()
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    metrics["run"].pop("train_seconds")
    state["metrics"] = json.dumps(metrics, sort_keys=True)
    return state


def train_faults(work, kills, rng, epochs, steps):
    from tfhash.training.run_dir import RunDir

    def command(run_dir):
        return [
            sys.executable,
            "-m",
            "tfhash.train",
            "--flagfile=configs/quickstart.cfg",
            f"--run_dir={run_dir}",
            f"--epochs={epochs}",
            f"--steps_per_epoch={steps}",
            "--eval_every=1",
            "--verbose=0",
        ]

    reference = os.path.join(work, "train_reference")
    result, seconds = run(command(reference))
    assert result.returncode == 0, result.stderr[-2000:]
    expected = run_state(reference)
    print(
        f"train: reference {seconds:.1f} s ({epochs} epochs x {steps} steps), load {load():.2f}",
        flush=True,
    )
    trials, reference_seconds = [], seconds
    for trial in range(kills):
        run_dir = os.path.join(work, f"train_{trial}")
        moment, was_running, seconds = kill_while_running(
            command(run_dir), seconds, rng, lambda: shutil.rmtree(run_dir, ignore_errors=True)
        )
        try:
            done = RunDir(run_dir).completed_epochs()
        except Exception as e:  # noqa: BLE001 -- what the next command would say
            done = f"refused: {e}"
        result, _ = run(command(run_dir))
        leftovers = [
            os.path.join(top, n)
            for top, _, names in os.walk(run_dir)
            for n in names
            if ".partial" in n
        ]
        exact = result.returncode == 0 and run_state(run_dir) == expected
        trials.append(
            {
                "moment_s": round(moment, 2),
                "killed": was_running,
                "epochs_done_at_kill": done,
                "rerun_exit": result.returncode,
                "exact": exact,
                "partial_files_left": len(leftovers),
            }
        )
        print(
            f"  train kill {trial + 1}/{kills} at {moment:5.1f} s: "
            f"{'killed' if was_running else 'had finished'}, {done} epochs done, rerun exit "
            f"{result.returncode}, {'exact' if exact else 'DIFFERS'}"
            + (f" ({result.stderr.strip().splitlines()[-1:]})" if result.returncode else ""),
            flush=True,
        )
        shutil.rmtree(run_dir)
    return {
        "reference_s": round(reference_seconds, 1),
        "last_window_s": round(seconds, 1),
        "trials": trials,
    }


# ---------------------------------------------------------------------------------------------
# Indexes.


def write_codes(directory, name, codes, ids):
    os.makedirs(directory, exist_ok=True)
    np.save(os.path.join(directory, f"{name}_codes.npy"), codes)
    np.save(os.path.join(directory, f"{name}_item_ids.npy"), ids)


def faiss_state(out):
    from tfhash import retrieval

    index = retrieval.open_index(out)
    return index.item_ids.tobytes() + index.codes().tobytes() + index.paths.tobytes()


def faiss_faults(work, kills, rng):
    n = 1_000_000
    codes = rng.integers(0, 256, (2 * n, 6), dtype=np.uint8)
    ids = np.array([f"img/{i:07d}.jpg" for i in range(2 * n)])
    write_codes(os.path.join(work, "codes"), "base", codes[:n], ids[:n])
    write_codes(os.path.join(work, "codes"), "more", codes[n:], ids[n:])
    gone = os.path.join(work, "gone.txt")
    with open(gone, "w") as f:
        f.write("\n".join(ids[:n:200]) + "\n")
    base = os.path.join(work, "faiss_base")
    result, _ = run(
        [
            sys.executable,
            "-m",
            "tfhash.index",
            f"--codes={work}/codes",
            "--name=base",
            f"--out={base}",
            "--bits=48",
        ]
    )
    assert result.returncode == 0, result.stderr

    def command(out):
        return [
            sys.executable,
            "-m",
            "tfhash.index",
            f"--codes={work}/codes",
            "--name=more",
            f"--delete={gone}",
            f"--out={out}",
        ]

    reference = os.path.join(work, "faiss_reference")
    shutil.copytree(base, reference)
    result, seconds = run(command(reference))
    assert result.returncode == 0, result.stderr
    before, after = faiss_state(base), faiss_state(reference)
    print(
        f"faiss: reference {seconds:.1f} s (append {n:,} to {n:,}, delete {n // 200:,}), "
        f"load {load():.2f}",
        flush=True,
    )
    trials, reference_seconds = [], seconds
    for trial in range(kills):
        out = os.path.join(work, f"faiss_{trial}")

        def prepare():
            shutil.rmtree(out, ignore_errors=True)
            shutil.copytree(base, out)

        moment, was_running, seconds = kill_while_running(command(out), seconds, rng, prepare)
        try:
            state = faiss_state(out)
            seen = "before" if state == before else "after" if state == after else "OTHER"
        except Exception as e:  # noqa: BLE001
            seen = f"unreadable: {e}"
        rerun = None
        if seen == "before":
            rerun = run(command(out))[0].returncode
        exact = seen in ("before", "after") and rerun in (None, 0) and faiss_state(out) == after
        trials.append(
            {
                "moment_s": round(moment, 2),
                "killed": was_running,
                "seen": seen,
                "rerun_exit": rerun,
                "exact": exact,
            }
        )
        print(
            f"  faiss kill {trial + 1}/{kills} at {moment:4.1f} s "
            f"({'running' if was_running else 'had finished'}): index {seen}, "
            f"{'exact' if exact else 'DIFFERS'}",
            flush=True,
        )
        shutil.rmtree(out)
    return {
        "reference_s": round(reference_seconds, 1),
        "last_window_s": round(seconds, 1),
        "trials": trials,
    }


_MILVUS_STATE = """
import json, sys
import numpy as np
from tfhash import retrieval
index = retrieval.MilvusIndex(sys.argv[1], "faults")
visible = index.client.query("faults", filter=index._visible(), output_fields=["count(*)"])
top = [hits.item_ids.tolist() for hits in index.search(np.load(sys.argv[2]), 100)]
print(json.dumps([index.size, visible[0]["count(*)"], top]))
"""


def milvus_state(uri, queries):
    """(size, visible rows, top-100 ids of each query): what a search sees. Read in another
    process: Milvus Lite lets one process at a time open a file, and its server stays up for
    as long as the process that started it."""
    result, _ = run([sys.executable, "-c", _MILVUS_STATE, uri, queries], timeout=300)
    if result.returncode:
        raise RuntimeError(result.stderr.strip().splitlines()[-1])
    return json.loads(result.stdout.strip().splitlines()[-1])


def milvus_faults(work, kills, rng):
    n = 50_000
    codes = rng.integers(0, 256, (2 * n, 6), dtype=np.uint8)
    ids = np.array([f"img/{i:07d}.jpg" for i in range(2 * n)])
    queries = os.path.join(work, "queries.npy")
    np.save(queries, rng.integers(0, 256, (20, 6), dtype=np.uint8))
    write_codes(os.path.join(work, "mcodes"), "base", codes[:n], ids[:n])
    write_codes(os.path.join(work, "mcodes"), "more", codes[n:], ids[n:])
    gone = os.path.join(work, "mgone.txt")
    with open(gone, "w") as f:
        f.write("\n".join(ids[:n:4]) + "\n")
    base = os.path.join(work, "milvus_base.db")
    result, _ = run(
        [
            sys.executable,
            "-m",
            "tfhash.index",
            f"--codes={work}/mcodes",
            "--name=base",
            "--backend=milvus",
            f"--uri={base}",
            "--collection=faults",
            "--bits=48",
        ]
    )
    assert result.returncode == 0, result.stderr
    operations = {
        "delete": [f"--delete={gone}"],
        "append": [f"--codes={work}/mcodes", "--name=more"],
    }

    def command(uri, operation):
        return [
            sys.executable,
            "-m",
            "tfhash.index",
            "--backend=milvus",
            f"--uri={uri}",
            "--collection=faults",
            *operations[operation],
        ]

    before = milvus_state(base, queries)
    references = {}
    for operation in operations:
        uri = os.path.join(work, f"milvus_reference_{operation}.db")
        shutil.copy(base, uri)
        result, seconds = run(command(uri, operation))
        assert result.returncode == 0, result.stderr
        references[operation] = (seconds, milvus_state(uri, queries))
        print(f"milvus: reference {operation} {seconds:.1f} s, load {load():.2f}", flush=True)
    trials, reference_seconds = [], {k: round(v[0], 1) for k, v in references.items()}
    for trial in range(kills):
        operation = ("delete", "append")[trial % 2]
        seconds, after = references[operation]
        uri = os.path.join(work, f"milvus_{trial}.db")
        moment, was_running, seconds = kill_while_running(
            command(uri, operation), seconds, rng, lambda: shutil.copy(base, uri)
        )
        references[operation] = (seconds, after)
        try:
            state = milvus_state(uri, queries)
            seen = (
                "before"
                if state == before
                else "after"
                if state == after
                else f"OTHER (size {state[0]}, {state[1]} rows visible)"
            )
        except Exception as e:  # noqa: BLE001
            seen = f"unusable: {str(e)[:120]}"
        rerun = None
        if seen == "before":
            rerun = run(command(uri, operation))[0].returncode
        exact = (
            seen in ("before", "after")
            and rerun in (None, 0)
            and milvus_state(uri, queries) == after
        )
        trials.append(
            {
                "operation": operation,
                "moment_s": round(moment, 2),
                "killed": was_running,
                "seen": seen,
                "rerun_exit": rerun,
                "exact": exact,
            }
        )
        print(
            f"  milvus {operation} kill {trial + 1}/{kills} at {moment:4.1f} s "
            f"({'running' if was_running else 'had finished'}): index {seen}, "
            f"{'exact' if exact else 'DIFFERS'}",
            flush=True,
        )
        os.remove(uri)
    return {
        "reference_s": reference_seconds,
        "last_window_s": {k: round(v[0], 1) for k, v in references.items()},
        "trials": trials,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 kills of each target")
    parser.add_argument("--train_kills", type=int, default=20)
    parser.add_argument("--index_kills", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="of the kill moments and the codes")
    parser.add_argument(
        "--targets", default="train,faiss,milvus", help="which of train, faiss, milvus"
    )
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    if args.quick:
        args.train_kills = args.index_kills = 3
    rng = np.random.default_rng(args.seed)
    started = time.time()
    report = {
        "command": " ".join(sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_at_start": round(load(), 2),
    }
    with tempfile.TemporaryDirectory(prefix="tfhash-faults-") as work:
        targets = args.targets.split(",")
        if "faiss" in targets:
            report["faiss"] = faiss_faults(work, args.index_kills, rng)
        if "milvus" in targets:
            report["milvus"] = milvus_faults(work, args.index_kills, rng)
        if "train" in targets:
            report["train"] = train_faults(work, args.train_kills, rng, args.epochs, args.steps)
    report["load_at_end"] = round(load(), 2)
    report["minutes"] = round((time.time() - started) / 60, 1)
    print()
    for target in ("train", "faiss", "milvus"):
        if target in report:
            trials = report[target]["trials"]
            killed = sum(t["killed"] for t in trials)
            print(
                f"{target}: {sum(t['exact'] for t in trials)} of {len(trials)} resumed "
                f"exactly with nothing lost ({killed} killed while running, the others "
                "finished first in every attempt)"
            )
    print(
        f"{report['minutes']} min; load {report['load_at_start']} at the start, "
        f"{report['load_at_end']} at the end"
    )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
