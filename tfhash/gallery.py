"""The retrieval gallery: each query image with its top results, relevant ones framed green.

One row per query: the query image (framed black), then its results in rank
order, each titled with its rank and Hamming distance, captioned with its class
names (when known) and framed green when it shares a label with the query, red
when it shares none, grey when either has no labels. An image that cannot be
read (a path that is not on this machine) is drawn as a grey tile with its item
id. It is the figure people look at first to judge a hashing model, so its text
is set at 9-10 points on tiles of 128 pixels, readable at the PNG's own size.

Drawn with matplotlib on its Agg canvas (no GUI backend, no pyplot state);
images are read with Pillow, which matplotlib depends on.

:func:`draw_search_gallery` and :func:`draw_evaluation_gallery` lay out the galleries of
``python -m tfhash.search`` and ``python -m tfhash.evaluate``.

Example::

    hits = index.search(query_codes, k=8)
    relevant = [relevance(q, h.labels) for q, h in zip(query_label_sets, hits)]
    draw_gallery("gallery.png", [(path, "query 0"), ...], hits, relevant)
"""

import os

import numpy as np

from tfhash.errors import UsageError

GREEN, RED, GREY, BLACK = "#1a9850", "#d73027", "#9e9e9e", "#000000"
FONT = 9  # points; at the PNG's 100 dpi about 12 pixels high


def label_names(labels, class_names):
    """``"cat"`` (or ``"sea+sunset"``) for label ids and the class names; ``""`` without.

    >>> label_names([2, 0], ["sea", "sky", "sunset"])
    'sunset+sea'
    """
    if labels is None or not class_names:
        return ""
    return "+".join(str(class_names[i]) if 0 <= i < len(class_names) else str(i) for i in labels)


def relevance(query_labels, hit_labels):
    """Per hit, whether it shares a label with the query: bools, or ``None`` without labels.

    Args:
        query_labels: the query's class ids (a list), or ``None``.
        hit_labels: one list of class ids per hit, or ``None``.

    >>> relevance([3], [[3], [1], [1, 3]])
    [True, False, True]
    """
    if query_labels is None or hit_labels is None:
        return None
    query = set(query_labels)
    return [bool(query.intersection(labels)) for labels in hit_labels]


def _thumbnail(path, size):
    """RGB uint8 ``[size, size, 3]`` of an image file (letterboxed), or ``None``."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            image = ImageOps.contain(image.convert("RGB"), (size, size))  # up or down
            tile = Image.new("RGB", (size, size), (255, 255, 255))
            tile.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
            return np.asarray(tile)
    except (OSError, ValueError):
        return None


def _cell(axes, path, title, colour, size, label, caption=""):
    pixels = _thumbnail(path, size) if path else None
    if pixels is None:
        axes.imshow(np.full((size, size, 3), 225, np.uint8))
        axes.text(
            size / 2,
            size / 2,
            os.path.basename(str(label))[:14],
            ha="center",
            va="center",
            fontsize=FONT - 1,
            wrap=True,
        )
    else:
        axes.imshow(pixels)
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(4)
    axes.set_title(title, fontsize=FONT + 1, pad=3)
    if caption:
        axes.set_xlabel(caption[:18], fontsize=FONT, labelpad=2)


def draw_gallery(
    path,
    queries,
    hits,
    relevant=None,
    max_queries=10,
    max_results=10,
    thumbnail=128,
    class_names=None,
    query_labels=None,
):
    """Draws queries and their results into a PNG at ``path``; returns ``path``.

    Args:
        path: the output file (``.png``).
        queries: one ``(image path or None, title)`` per query.
        hits: one :class:`tfhash.retrieval.codes.Hits` per query.
        relevant: one list of bools (or ``None``) per query, from :func:`relevance`.
        max_queries, max_results: rows and result columns drawn.
        thumbnail: pixels per tile.
        class_names: the names of the label ids, to caption each image with its classes.
        query_labels: one list of label ids (or ``None``) per query, for its caption.
    """
    from tfhash.evaluation import plots

    plots.require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not hits:
        raise UsageError("no queries to draw in the gallery")
    rows = min(len(hits), max_queries)
    columns = 1 + max(1, min(max(len(h) for h in hits[:rows]), max_results))
    inches = thumbnail / 100  # a tile at the saved 100 dpi
    figure = Figure(figsize=(columns * (inches + 0.25), rows * (inches + 0.6)))
    FigureCanvasAgg(figure)
    grid = figure.subplots(rows, columns, squeeze=False)
    for row in range(rows):
        query_path, query_title = queries[row]
        query_label = None if query_labels is None else query_labels[row]
        _cell(
            grid[row, 0],
            query_path,
            query_title,
            BLACK,
            thumbnail,
            query_title,
            label_names(query_label, class_names),
        )
        marks = relevant[row] if relevant is not None else None
        found = hits[row]
        for column in range(1, columns):
            axes = grid[row, column]
            rank = column - 1
            if rank >= len(found):
                axes.axis("off")
                continue
            colour = GREY if marks is None else (GREEN if marks[rank] else RED)
            caption = label_names(None if found.labels is None else found.labels[rank], class_names)
            _cell(
                axes,
                found.paths[rank],
                f"{rank + 1}: d={int(found.distances[rank])}",
                colour,
                thumbnail,
                found.item_ids[rank],
                caption,
            )
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.03, top=0.97, wspace=0.12, hspace=0.45)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def draw_search_gallery(path, hits, ids, paths, labels, class_names, max_queries, max_results):
    """The gallery of ``python -m tfhash.search``: each query (its image when ``paths`` has
    one, titled by its id) with its results, framed by whether they share a label with it."""
    relevant = None if labels is None else [relevance(q, h.labels) for q, h in zip(labels, hits)]
    queries = [
        (None if paths is None else paths[i], os.path.basename(str(ids[i]))[:18])
        for i in range(len(hits))
    ]
    return draw_gallery(
        path,
        queries,
        hits,
        relevant,
        max_queries=max_queries,
        max_results=max_results,
        class_names=class_names,
        query_labels=labels,
    )


def spread_queries(labels, count):
    """Positions of up to ``count`` queries taken from each class in turn — one of every
    class before a second of any, in query order within a class (a multi-label query counts
    for its first label): the gallery shows the classes, not the first rows of a split
    sorted by class.

    >>> spread_queries(np.array([0, 0, 0, 1, 1, 2]), 4).tolist()
    [0, 3, 5, 1]
    """
    labels = np.asarray(labels)
    first = labels if labels.ndim == 1 else np.argmax(labels, axis=1)
    rank = np.zeros(len(first), np.int64)
    for c in np.unique(first):
        members = np.flatnonzero(first == c)
        rank[members] = np.arange(len(members))
    return np.lexsort((first, rank))[:count]


def draw_evaluation_gallery(
    path,
    query_codes,
    query_labels,
    db_codes,
    db_labels,
    bits,
    query_paths,
    db_paths,
    queries=8,
    k=8,
    class_names=None,
):
    """The gallery of ``python -m tfhash.evaluate --gallery``: ``queries`` queries spread over
    the classes (:func:`spread_queries`) and their top ``k`` results by Hamming distance (ties
    in database order, as ``tfhash.search``), drawn into ``path``."""
    from tfhash.evaluation import distances
    from tfhash.retrieval.codes import Hits, label_sets

    chosen = spread_queries(query_labels, queries)
    space = distances.Hamming(db_codes, bits)
    rows = space(space.prepare(query_codes[chosen], "query_codes")).astype(np.int64)
    db_sets, query_sets = label_sets(db_labels), label_sets(query_labels)
    hits, relevant = [], []
    for q, row in zip(chosen, rows):
        top = np.argsort(row, kind="stable")[:k]
        hits.append(
            Hits(
                distances=row[top],
                positions=top,
                item_ids=db_paths[top],
                paths=db_paths[top],
                labels=[db_sets[i] for i in top],
            )
        )
        relevant.append(relevance(query_sets[q], hits[-1].labels))
    titles = [(query_paths[q], f"query {q}") for q in chosen]
    return draw_gallery(
        path,
        titles,
        hits,
        relevant,
        max_results=k,
        class_names=class_names,
        query_labels=[query_sets[q] for q in chosen],
    )
