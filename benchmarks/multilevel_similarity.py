r"""Do the Hamming distances follow the similarity level? DMSSPH against LSDH on generated data.

Generated multi-label data: C labels, each item 1–3 of them; an item's features are a Gaussian
prototype of its label *set* plus noise: they tell label sets apart but say nothing of how label
sets overlap, so any multilevel structure in the codes is what the loss put there. The same small network (features → Dense(64, ReLU) → 16-bit tanh head) is trained with
each loss on the same batches (Adam, the same steps); on held-out items, every pair's Hamming
distance is correlated (Spearman) with the pair's shared-label count and Jaccard coefficient.
A good multilevel code has a strongly *negative* correlation (more shared labels, fewer
differing bits); the table reports ``−ρ``, over all pairs and over the pairs that share a label
(where binary similarity sees no difference between levels).

    python benchmarks/multilevel_similarity.py [--steps=600] [--seeds=0,1,2]
"""

import argparse
import json
import os
import sys

import numpy as np
from scipy import stats

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def generate(seed, num_items=900, num_labels=6, dims=32, noise=0.6):
    """``(features float32 [N, d], labels int [N, C])``."""
    rng = np.random.default_rng(seed)
    counts = rng.choice([1, 2, 3], size=num_items, p=[0.5, 0.35, 0.15])
    labels = np.zeros((num_items, num_labels), np.int64)
    for row, count in zip(labels, counts):
        row[rng.choice(num_labels, count, replace=False)] = 1
    # One random prototype per distinct label set: the features tell label sets apart but say
    # nothing of how they overlap, so whatever level structure the codes have comes from the loss.
    sets, which = np.unique(labels, axis=0, return_inverse=True)
    prototypes = rng.normal(size=(len(sets), dims))
    features = prototypes[which.ravel()] + noise * rng.normal(size=(num_items, dims))
    return features.astype(np.float32), labels


def correlations(codes, labels):
    """``−ρ`` (Spearman) of pairwise Hamming distance against shared count and Jaccard."""
    b = codes > 0
    i, j = np.triu_indices(len(b), 1)
    hamming = np.count_nonzero(b[i] != b[j], axis=1)
    shared = np.sum(labels[i] & labels[j], axis=1)
    union = np.sum(labels[i] | labels[j], axis=1)
    jaccard = shared / union
    similar = shared > 0
    out = {}
    for name, level in (("shared", shared), ("jaccard", jaccard)):
        out[f"{name}_all"] = float(-stats.spearmanr(hamming, level).statistic)
        out[f"{name}_similar"] = float(-stats.spearmanr(hamming[similar], level[similar]).statistic)
    return out


def train_codes(method, features, labels, train, test, steps, bits=16, seed=0, batch=64):
    """Trains the head with ``method``'s loss on ``train`` rows; the ±1 codes of ``test``."""
    import keras

    from tfhash import losses, models
    from tfhash.models.layers import HashingLayer

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((features.shape[1],))
    hidden = keras.layers.Dense(64, activation="relu")(inputs)
    model = models.HashingModel(inputs, HashingLayer(bits)(hidden))
    kwargs = {"seed": seed} if method == "lsdh" else {}  # LSDH's margin: its default, K/2
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=losses.get(method, **kwargs))
    rng = np.random.default_rng(seed)
    batches = np.stack([rng.choice(train, batch, replace=False) for _ in range(steps)])
    x, y = features[batches.ravel()], labels[batches.ravel()].astype(np.float32)
    model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
    return np.where(model.predict(features[test], verbose=0) >= 0, 1, -1)


def compare(seed=0, steps=600, methods=("dmssph", "lsdh")):
    """``{method: correlations}`` for one generated data set."""
    features, labels = generate(seed)
    train, test = np.arange(600), np.arange(600, len(labels))
    return {
        m: correlations(
            train_codes(m, features, labels, train, test, steps, seed=seed), labels[test]
        )
        for m in methods
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    results = {int(s): compare(int(s), args.steps) for s in args.seeds.split(",")}
    print(json.dumps(results, indent=1))
    keys = ("shared_all", "jaccard_all", "shared_similar", "jaccard_similar")
    print("| method | " + " | ".join(f"−ρ {k.replace('_', ', ')}" for k in keys) + " |")
    print("|---|" + "---|" * len(keys))
    for method in ("dmssph", "lsdh"):
        cells = []
        for key in keys:
            values = np.array([results[s][method][key] for s in results])
            cells.append(
                f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0:.3f}"
            )
        print(f"| {method} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
