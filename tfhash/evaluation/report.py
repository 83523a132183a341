"""The evaluator: scores query codes against database codes, in query chunks of bounded memory."""

import dataclasses

import numpy as np

import tfhash
from tfhash.errors import UsageError
from tfhash.evaluation import counting, inputs
from tfhash.evaluation import distances as distances_lib
from tfhash.evaluation import metrics as metrics_lib
from tfhash.evaluation import ties as ties_lib
from tfhash.evaluation.conventions import Conventions

DEFAULT_METRICS = ("map", "p@k", "p@r2", "pr")

# Queries per chunk are chosen so that a chunk's distance, relevance and
# ranking arrays hold about this many elements each: a few tens of MB.
_CHUNK_ELEMENTS = 1 << 22
# Queries per chunk for the compiled per-distance counts, which hold no [queries, N] arrays.
_COUNTING_CHUNK = 4096


def evaluate_codes(
    query_codes,
    query_labels,
    database_codes,
    database_labels,
    *,
    metrics=DEFAULT_METRICS,
    top_k=None,
    ties="average",
    ap_denominator="min_r_k",
    empty_queries="skip",
    empty_ball="zero",
    gain="shared",
    distance="hamming",
    bits=None,
):
    """Scores query codes against database codes with exact, tie-aware retrieval metrics.

    Every query ranks the whole database by distance; relevant items share at
    least one label with the query. Metrics are averaged over queries. The
    report is JSON-serialisable: one entry per metric, plus ``"conventions"``
    (tie policy, AP@k denominator, treatment of undefined values, the preset
    they match, a one-line summary) and ``"data"`` (sizes, code length, label
    form, queries without a relevant item).

    Args:
        query_codes, database_codes: ``[Q, K]`` and ``[N, K]`` binary codes,
            ±1 or 0/1, or packed ``uint8`` rows with ``bits=K``; real-valued
            embeddings with ``distance="euclidean"`` or ``"cosine"``.
        query_labels, database_labels: class ids ``[Q]``/``[N]`` or multi-hot
            ``[Q, C]``/``[N, C]``.
        metrics: names (see :func:`tfhash.evaluation.metrics.from_name`) or
            :class:`~tfhash.evaluation.metrics.RetrievalMetric` objects.
        top_k: cut-off of ``map``, ``wap``, ``ndcg``, ``acg`` written without
            ``@K``; ``None`` is the whole ranking.
        ties, ap_denominator, empty_queries, empty_ball, gain: the
            :class:`~tfhash.evaluation.conventions.Conventions`; or
            ``**PRESETS["deephash"]`` for the widely used public code's.
        distance: ``"hamming"``, ``"euclidean"`` or ``"cosine"``.
        bits: the code length of packed ``uint8`` codes; ``None`` otherwise.

    Returns:
        The report dict.

    Raises:
        UsageError: non-binary codes, mismatched lengths or label forms, a
            cut-off larger than the database, an unknown metric or convention.

    Example:

    >>> codes = np.array([[1, 1], [1, -1], [-1, -1]], np.int8)
    >>> labels = np.array([0, 0, 1])
    >>> report = evaluate_codes(codes[:1], labels[:1], codes, labels, metrics=["map"])
    >>> report["map"], report["conventions"]["ties"]
    (1.0, 'average')
    """
    conventions = Conventions(
        ties=ties,
        ap_denominator=ap_denominator,
        empty_queries=empty_queries,
        empty_ball=empty_ball,
        gain=gain,
    )
    if distance not in distances_lib.DISTANCES:
        raise UsageError(
            f"distance must be one of {', '.join(distances_lib.DISTANCES)}; got {distance!r}"
        )
    if distance == "hamming":
        space = distances_lib.Hamming(database_codes, bits)
    elif bits is not None:
        raise UsageError(f"bits= is for packed binary codes, not distance={distance!r}")
    else:
        space = distances_lib.Embedding(database_codes, distance)
    queries = space.prepare(query_codes, "query_codes")
    relevance = inputs.Relevance(query_labels, database_labels, len(queries), space.num_items)

    if isinstance(metrics, (str, metrics_lib.RetrievalMetric)):
        metrics = [metrics]
    metrics = [metrics_lib.from_name(m, top_k) for m in metrics]
    if not metrics:
        raise UsageError("no metrics asked for; give e.g. metrics=['map']")
    names = [m.name for m in metrics]
    if len(set(names)) < len(names):
        raise UsageError(f"a metric is listed twice: {names}")
    code_bits = space.bits if distance == "hamming" else None
    for metric in metrics:
        metric.check(space.num_items, code_bits)

    means = _grouped_means(queries, space, relevance, metrics, conventions)
    report = {m.name: m.summarize(mean, space.num_items) for m, mean in zip(metrics, means)}
    size = {"bits": space.bits} if distance == "hamming" else {"dimensions": space.dims}
    report["conventions"] = {**conventions.describe(), "distance": distance}
    report["data"] = {
        "queries": len(queries),
        "database": space.num_items,
        **size,
        "labels": relevance.kind,
        "queries_without_relevant": relevance.num_without_relevant,
        "tfhash_version": tfhash.__version__,
    }
    return report


def mean_average_precision(
    query_codes,
    query_labels,
    database_codes,
    database_labels,
    *,
    top_k=None,
    ties="average",
    ap_denominator="min_r_k",
    empty_queries="skip",
    distance="hamming",
    bits=None,
):
    """MAP (``top_k=None``) or MAP@k of query codes against database codes.

    The same computation and arguments as :func:`evaluate_codes`, for one
    number (the training code's validation MAP).

    Example:

    >>> codes = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], np.int8)
    >>> labels = np.array([0, 1, 0, 1])
    >>> # Ranks from query 0: item 0 (d=0), items 1 and 2 tied (d=1), item 3.
    >>> # Relevant: items 0 and 2. AP is (1 + 2/2) / 2 or (1 + 2/3) / 2 by tie order.
    >>> mean_average_precision(codes[:1], labels[:1], codes, labels, ties="optimistic")
    1.0
    >>> round(mean_average_precision(codes[:1], labels[:1], codes, labels), 4)
    0.9167
    """
    metric = metrics_lib.MeanAveragePrecision(top_k)
    report = evaluate_codes(
        query_codes,
        query_labels,
        database_codes,
        database_labels,
        metrics=[metric],
        ties=ties,
        ap_denominator=ap_denominator,
        empty_queries=empty_queries,
        distance=distance,
        bits=bits,
    )
    return report[metric.name]


def default_metrics(labels, k=100):
    """The metrics a run's final report computes for labels like ``labels``.

    :data:`DEFAULT_METRICS` for class ids; for multi-hot labels ``[N, C]`` also the
    multi-label criteria: ``map:jaccard>=0.5`` and ``ndcg@k``, ``acg@k``, ``wap@k`` with
    both gains (``:shared``, ``:jaccard``), ``k`` at most ``len(labels)`` (pass the
    database's labels).

    Example:

    >>> default_metrics(np.array([0, 1, 1]))
    ('map', 'p@k', 'p@r2', 'pr')
    >>> default_metrics(np.eye(3, dtype=int))[4:7]
    ('map:jaccard>=0.5', 'ndcg@3:shared', 'ndcg@3:jaccard')
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] < 2:
        return DEFAULT_METRICS
    k = max(1, min(int(k), len(labels)))
    return (
        DEFAULT_METRICS
        + ("map:jaccard>=0.5",)
        + tuple(
            f"{name}@{k}:{gain}"
            for name in ("ndcg", "acg", "wap")
            for gain in ("shared", "jaccard")
        )
    )


def _grouped_means(queries, space, relevance, metrics, conventions):
    """:func:`_mean_over_queries` once per (gain, relevance) that the metrics ask for."""
    groups = {}
    for position, metric in enumerate(metrics):
        gain = (metric.gain or conventions.gain) if metric.graded else conventions.gain
        groups.setdefault((gain, metric.jaccard_threshold), []).append(position)
    means = [None] * len(metrics)
    for (gain, threshold), positions in groups.items():
        group_relevance = (
            relevance if threshold is None else inputs.JaccardRelevance(relevance, threshold)
        )
        group_conventions = dataclasses.replace(conventions, gain=gain)
        group = _mean_over_queries(
            queries, space, group_relevance, [metrics[p] for p in positions], group_conventions
        )
        for position, mean in zip(positions, group):
            means[position] = mean
    return means


def _mean_over_queries(queries, space, relevance, metrics, conventions):
    """Each metric's per-query values averaged over all queries (NaN values left out)."""
    num_items = space.num_items
    hamming = isinstance(space, distances_lib.Hamming)
    average = conventions.ties == "average"
    ranking_metrics = [m for m in metrics if not m.needs_hamming]
    graded = any(m.graded for m in metrics)
    depth = max((m.ranking_depth(num_items) for m in ranking_metrics), default=0)
    ndcg = [m for m in metrics if isinstance(m, metrics_lib.NormalizedDCG)]
    ideal_depth = max((m.ranking_depth(num_items) for m in ndcg), default=0)
    discount_sums = None
    if ndcg:
        discount_sums = np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(2.0, num_items + 2)))]

    # Hash lookup and tie-averaged rankings need only per-distance counts, which the compiled
    # counter gets without distance matrices (for binary relevance, when numba is there).
    counter = None
    if (
        hamming
        and not graded
        and (average or not ranking_metrics)
        and counting.available()
        and isinstance(relevance, inputs.Relevance)
    ):  # the counter: shares a label
        counter = counting.HammingCounts(space.item_words(), space.bits, relevance)
    totals = [None] * len(metrics)
    counts = [None] * len(metrics)
    chunk = _COUNTING_CHUNK if counter else max(1, _CHUNK_ELEMENTS // num_items)
    for start in range(0, len(queries), chunk):
        rows = slice(start, start + chunk)
        if counter:
            batch = _counted_batch(counter, queries[rows], rows, conventions, num_items)
            batch.groups = batch.bins if ranking_metrics else None
            _accumulate(metrics, batch, totals, counts)
            continue
        distances = space(queries[rows])
        relevant = relevance.relevant(rows)
        gains = relevance.gains(rows, conventions.gain) if graded else None
        # Row by row: count_nonzero with an axis falls back to a slow boolean sum.
        num_relevant = np.array([np.count_nonzero(row) for row in relevant])
        batch = metrics_lib.QueryBatch(conventions, num_items, num_relevant)
        if hamming and (average or len(ranking_metrics) < len(metrics)):
            batch.bins = ties_lib.hamming_groups(
                distances, relevant, gains if average else None, space.bits
            )
        if ranking_metrics and average:
            batch.groups = (
                batch.bins if hamming else ties_lib.sorted_groups(distances, relevant, gains)
            )
        elif ranking_metrics:
            batch.ranked_relevant = np.empty((len(distances), depth), bool)
            batch.ranked_gains = np.empty((len(distances), depth)) if graded else None
            for i, row in enumerate(distances):
                order = ties_lib.rank(
                    row,
                    depth,
                    ties_lib.tie_key(
                        conventions.ties, relevant[i], None if gains is None else gains[i]
                    ),
                )
                np.take(relevant[i], order, out=batch.ranked_relevant[i])
                if graded:
                    np.take(gains[i], order, out=batch.ranked_gains[i])
        if ndcg:
            batch.ideal_gains = _ideal_gains(gains, ideal_depth)
            batch.discount_sums = discount_sums
        _accumulate(metrics, batch, totals, counts)
    return [
        np.divide(t, c, out=np.full(t.shape, np.nan), where=c > 0) for t, c in zip(totals, counts)
    ]


def _ideal_gains(gains, depth):
    """``[queries, depth]``: each query's top gains in decreasing order (zeros after R)."""
    ideal = np.zeros((len(gains), depth))
    for row, query_gains in zip(ideal, gains):
        positive = np.sort(query_gains[query_gains > 0])[::-1][:depth]
        row[: len(positive)] = positive
    return ideal


def _counted_batch(counter, query_words, rows, conventions, num_items):
    """A batch whose per-distance counts come from the compiled counter."""
    bins = counter(query_words, rows)
    batch = metrics_lib.QueryBatch(conventions, num_items, bins.hits.sum(1))
    batch.bins = bins
    return batch


def _accumulate(metrics, batch, totals, counts):
    """Adds a batch's per-query values to each metric's running sum and count of defined ones."""
    for i, metric in enumerate(metrics):
        values = metric.per_query(batch)
        defined = ~np.isnan(values)
        total = np.where(defined, values, 0.0).sum(0)
        totals[i] = total if totals[i] is None else totals[i] + total
        counts[i] = defined.sum(0) + (0 if counts[i] is None else counts[i])


def summary_line(report):
    """One line a person reads: a report's MAP, its tie convention and hash-lookup precision.

    Example:

    >>> codes = np.array([[1, 1], [1, -1], [-1, -1]], np.int8)
    >>> summary_line(evaluate_codes(codes[:1], [0], codes, [0, 0, 1], metrics=["map", "p@r2"]))
    'MAP 1.0000 (ties=average) over 1 queries x 3 database items, 2 bits; precision within Hamming radius 2: 0.6667'
    """
    data, conventions = report["data"], report["conventions"]
    maps = ", ".join(
        f"MAP{k[3:]} {v:.4f}"
        for k, v in report.items()
        if k.startswith("map") and isinstance(v, float)
    )
    lookup = report.get("p@r2", {}).get("precision")
    return (
        f"{maps} (ties={conventions['ties']}) over {data['queries']} queries x "
        f"{data['database']} database items, {data['bits']} bits"
        + ("" if lookup is None else f"; precision within Hamming radius 2: {lookup:.4f}")
    )
