"""Writes this fixture with the code before the retrieval package (commit cbc203f):

    git worktree add /tmp/old cbc203f
    cd /tmp/old && PYTHONPATH=/tmp/old python <this file> <this folder>

An encode-like set of 40 tie-heavy 12-bit codes with labels and class names goes through
``python -m tfhash.index`` (a flat index, then a delete and a re-add, so positions are not
insertion order; and a multi-hash one), and ``expected.json`` records what the old code's
searches returned. tests/retrieval/test_pre_redesign_index.py opens both with the current code.
"""

import json
import os
import subprocess
import sys

import numpy as np

out = os.path.abspath(sys.argv[1])
work = os.path.join(out, "encoded")
os.makedirs(work, exist_ok=True)
rng = np.random.default_rng(27)
centres = rng.random((3, 12)) < 0.5
bits = centres[rng.integers(0, 3, 40)] ^ (rng.random((40, 12)) < 0.1)
np.save(f"{work}/db_codes.npy", np.packbits(bits, axis=1))
np.save(f"{work}/db_labels.npy", rng.integers(0, 3, 40))
np.save(f"{work}/db_item_ids.npy", np.array([f"c{i % 3}/{i:02d}.png" for i in range(40)]))
with open(f"{work}/db_info.json", "w") as f:
    json.dump({"bits": 12, "class_names": ["ant", "bee", "cat"], "count": 40}, f)
queries = np.packbits(np.concatenate([centres, rng.random((3, 12)) < 0.5]), axis=1)
np.save(f"{out}/queries.npy", queries)
with open(f"{out}/deleted.txt", "w") as f:
    f.write("c1/01.png\nc0/06.png\n")


def index(*flags):
    subprocess.run([sys.executable, "-m", "tfhash.index", *flags], check=True)


index(f"--codes={work}", f"--out={out}/flat")
index(f"--out={out}/flat", f"--delete={out}/deleted.txt")
for name in ("c1/01.png", "c2/05.png"):  # re-added: c2/05.png moves to the end
    i = int(name[3:5])
    np.save(f"{work}/one_codes.npy", np.load(f"{work}/db_codes.npy")[[i]])
    np.save(f"{work}/one_labels.npy", np.load(f"{work}/db_labels.npy")[[i]])
    np.save(f"{work}/one_item_ids.npy", np.array([name]))
    index(f"--codes={work}/one_codes.npy", f"--out={out}/flat", "--replace")
index(f"--codes={work}/db_codes.npy", f"--out={out}/multihash", "--kind=multihash", "--nhash=3")

from tfhash import retrieval  # noqa: E402  (the old module, from PYTHONPATH)

expected = {}
for name in ("flat", "multihash"):
    found = retrieval.open_index(f"{out}/{name}")
    expected[name] = {
        "describe": found.describe(),
        "top5": [h.records() for h in found.search(queries, 5)],
        "radius2": [h.records() for h in found.radius_search(queries, 2)],
    }
with open(f"{out}/expected.json", "w") as f:
    json.dump(expected, f, indent=0)
for name in os.listdir(work):
    os.remove(os.path.join(work, name))
os.rmdir(work)
