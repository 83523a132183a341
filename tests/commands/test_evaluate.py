"""``python -m tfhash.evaluate``: the report and plots it writes, and its error paths (exit 2)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfhash import evaluation

pytestmark = pytest.mark.slow  # trains or exports models, or runs commands in subprocesses

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Class-structured codes of 16 and 48 bits (the 32-bit ones packed), and class ids."""
    root = tmp_path_factory.mktemp("codes")
    rng = np.random.default_rng(0)
    centres = rng.random((5, 48)) < 0.5
    labels = rng.integers(0, 5, 260)
    codes = np.where(centres[labels] ^ (rng.random((260, 48)) < 0.15), 1, -1).astype(np.int8)
    arrays = {
        "q48": codes[:30],
        "d48": codes[30:],
        "q16": codes[:30, :16],
        "d16": codes[30:, :16],
        "q32": np.packbits(codes[:30, :32] > 0, axis=1),
        "d32": np.packbits(codes[30:, :32] > 0, axis=1),
        "ql": labels[:30],
        "dl": labels[30:],
        "relaxed": codes[:30] * 0.9,
    }
    paths = {}
    for name, array in arrays.items():
        paths[name] = str(root / f"{name}.npy")
        np.save(paths[name], array)
    paths["arrays"] = arrays
    paths["not_npy"] = str(root / "notes.txt")
    with open(paths["not_npy"], "w") as f:
        f.write("not an array")
    return paths


def run(*args, python_prefix=None):
    code = [sys.executable] + (
        ["-c", python_prefix] if python_prefix else ["-m", "tfhash.evaluate"]
    )
    return subprocess.run(code + list(args), capture_output=True, text=True)


def base_args(files, out, q="q48", d="d48"):
    return [
        f"--query_codes={files[q]}",
        f"--db_codes={files[d]}",
        f"--query_labels={files['ql']}",
        f"--db_labels={files['dl']}",
        f"--out={out}",
    ]


def test_writes_the_report_and_plots(files, tmp_path):
    out = tmp_path / "report"
    result = run(*base_args(files, out), "--metrics=map,map@100,p@k,p@r2,pr", "--ties=average")
    assert result.returncode == 0, result.stderr
    assert "48 bits: map=" in result.stdout
    report = json.loads((out / "metrics.json").read_text())
    a = files["arrays"]
    expected = evaluation.evaluate_codes(
        a["q48"], a["ql"], a["d48"], a["dl"], metrics=["map", "map@100", "p@k", "p@r2", "pr"]
    )
    assert report == json.loads(json.dumps(expected))
    assert report["conventions"]["ties"] == "average"
    for name in ["pr_curve.png", "precision_at_k.png"]:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    assert not (out / "map_vs_bits.png").exists()


def test_several_code_lengths_give_one_report_each_and_the_plots_against_bits(files, tmp_path):
    out = tmp_path / "report"
    result = run(
        f"--query_codes={files['q16']},{files['q32']},{files['q48']}",
        f"--db_codes={files['d16']},{files['d32']},{files['d48']}",
        "--bits=0,32,0",
        f"--query_labels={files['ql']}",
        f"--db_labels={files['dl']}",
        f"--out={out}",
        "--metrics=map,map@50,p@r2,pr,p@k",
    )
    assert result.returncode == 0, result.stderr
    reports = json.loads((out / "metrics.json").read_text())["reports"]
    assert [r["data"]["bits"] for r in reports] == [16, 32, 48]
    a = files["arrays"]
    packed = evaluation.evaluate_codes(
        a["q32"], a["ql"], a["d32"], a["dl"], bits=32, metrics=["map"]
    )
    assert reports[1]["map"] == pytest.approx(packed["map"], abs=1e-15)
    for name in [
        "pr_curve.png",
        "precision_at_k.png",
        "precision_radius2_vs_bits.png",
        "map_vs_bits.png",
    ]:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name


def test_preset_sets_the_conventions(files, tmp_path):
    result = run(*base_args(files, tmp_path), "--metrics=map@100", "--preset=deephash", "--noplots")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "metrics.json").read_text())
    a = files["arrays"]
    expected = evaluation.mean_average_precision(
        a["q48"], a["ql"], a["d48"], a["dl"], top_k=100, **evaluation.PRESETS["deephash"]
    )
    assert report["map@100"] == pytest.approx(expected, abs=1e-15)
    assert report["conventions"]["preset"] == "deephash"
    assert not (tmp_path / "pr_curve.png").exists()


def test_embeddings_with_euclidean_distance(files, tmp_path):
    result = run(
        f"--query_codes={files['relaxed']}",
        f"--db_codes={files['d48']}",
        f"--query_labels={files['ql']}",
        f"--db_labels={files['dl']}",
        f"--out={tmp_path}",
        "--distance=euclidean",
        "--metrics=map,p@k",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["data"]["dimensions"] == 48 and report["conventions"]["distance"] == "euclidean"
    assert (tmp_path / "precision_at_k.png").exists()


ERRORS = [
    (
        "missing flag",
        lambda f, out: [f"--query_codes={f['q48']}", f"--out={out}"],
        "--db_codes is required",
    ),
    (
        "missing file",
        lambda f, out: [a.replace(f["q48"], f["q48"] + ".missing") for a in base_args(f, out)],
        "no such file",
    ),
    (
        "not an array",
        lambda f, out: [a.replace(f["ql"], f["not_npy"]) for a in base_args(f, out)],
        "is not a readable .npy array",
    ),
    ("relaxed codes", lambda f, out: base_args(f, out, q="relaxed"), "must be binary"),
    (
        "label length",
        lambda f, out: [a.replace(f["dl"], f["ql"]) for a in base_args(f, out)],
        "has 30 rows but the database codes have 230",
    ),
    (
        "k too large",
        lambda f, out: base_args(f, out) + ["--metrics=map@1000"],
        "larger than the database (230 items)",
    ),
    ("bits differ", lambda f, out: base_args(f, out, q="q16"), "have 16 bits but"),
    ("bad enum", lambda f, out: base_args(f, out) + ["--ties=random"], "flag --ties=random"),
    (
        "preset conflict",
        lambda f, out: base_args(f, out) + ["--preset=deephash", "--ties=average"],
        "--preset=deephash sets --ties=index",
    ),
    (
        "file counts",
        lambda f, out: base_args(f, out) + [f"--db_codes={f['d48']},{f['d16']}"],
        "1 --query_codes files but 2 --db_codes files",
    ),
    ("bits count", lambda f, out: base_args(f, out) + ["--bits=16,32"], "--bits has 2 values"),
    ("positional", lambda f, out: base_args(f, out) + ["extra"], "unexpected arguments"),
    ("unknown metric", lambda f, out: base_args(f, out) + ["--metrics=MAP"], "unknown metric"),
]


@pytest.mark.parametrize("name,make_args,expected", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_exit_2_with_one_line(files, tmp_path, name, make_args, expected):
    result = run(*make_args(files, tmp_path / "out"))
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0], lines[0]
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_missing_matplotlib_is_a_usage_error_unless_plots_are_off(files, tmp_path):
    block = (
        "import sys, runpy; sys.modules['matplotlib'] = None; "
        "runpy.run_module('tfhash.evaluate', run_name='__main__')"
    )
    result = run(*base_args(files, tmp_path), python_prefix=block)
    assert result.returncode == 2
    assert "plots need matplotlib" in result.stderr and "--plots=false" in result.stderr
    assert run(*base_args(files, tmp_path), "--noplots", python_prefix=block).returncode == 0


def test_the_cli_does_not_import_tensorflow(files, tmp_path):
    check = (
        "import sys, runpy\n"
        "try:\n"
        "    runpy.run_module('tfhash.evaluate', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    result = run(*base_args(files, tmp_path), python_prefix=check)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "metrics.json").exists()


def test_out_that_is_a_file_is_refused_before_scoring(files, tmp_path):
    out = tmp_path / "report.txt"
    out.write_text("mine")
    result = run(*base_args(files, out))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --out={out} is a file; pass a directory (created if missing)"
    ]
    assert result.stdout == "" and out.read_text() == "mine"  # nothing scored, nothing written


def test_an_earlier_report_is_refused_or_replaced_whole(files, tmp_path):
    out = tmp_path / "report"
    several = [
        f"--query_codes={files['q48']},{files['q16']}",
        f"--db_codes={files['d48']},{files['d16']}",
        f"--query_labels={files['ql']}",
        f"--db_labels={files['dl']}",
        f"--out={out}",
    ]
    assert run(*several).returncode == 0
    assert (out / "map_vs_bits.png").exists()
    result = run(*base_args(files, out))
    assert result.returncode == 2
    assert "already holds a report" in result.stderr and "--overwrite" in result.stderr
    assert run(*base_args(files, out), "--overwrite", "--metrics=map").returncode == 0
    # The earlier report's figures are gone: nothing of two runs is mixed.
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]
    (out / "notes.txt").write_text("mine")  # a user's own file is never touched
    assert run(*base_args(files, out), "--overwrite", "--metrics=map").returncode == 0
    assert (out / "notes.txt").read_text() == "mine"


def test_real_valued_distance_runs_with_the_default_metrics(files, tmp_path):
    result = run(
        *base_args(files, tmp_path / "r", q="relaxed", d="d48"), "--distance=euclidean", "--noplots"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert {"map", "p@k"} <= set(report) and "pr" not in report and "p@r2" not in report
    # Asked for explicitly, a radius metric is still refused, with the flag named.
    result = run(
        *base_args(files, tmp_path / "s", q="relaxed", d="d48"),
        "--distance=euclidean",
        "--metrics=map,pr",
        "--noplots",
    )
    assert result.returncode == 2


def test_packed_code_errors_name_the_flag(files, tmp_path):
    result = run(*base_args(files, tmp_path / "r", q="q32", d="d32"), "--bits=31", "--noplots")
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert "--bits=31" in line and " bits=31" not in line


def test_the_pr_curve_labels_its_radii(files, tmp_path):
    from tfhash.evaluation import plots

    report = evaluation.evaluate_codes(
        files["arrays"]["q16"],
        files["arrays"]["ql"],
        files["arrays"]["d16"],
        files["arrays"]["dl"],
        metrics=["pr"],
    )
    figure, axes = plots.new_figure()
    plots._label_radii(axes, report["pr"])
    labels = [text.get_text() for text in axes.texts]
    assert labels[0] == "r=0" and len(labels) <= 8 and all(t.startswith("r=") for t in labels)


def test_the_gallery_shows_the_first_queries_with_their_results(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(3), 4)
    codes = np.where(np.eye(3, 8, dtype=bool)[labels] ^ (rng.random((12, 8)) < 0.1), 1, -1)
    paths = []
    for i, label in enumerate(labels):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.full((16, 16, 3), 80 * label, np.uint8)).save(paths[-1])
    for name, rows in (("query", slice(0, 3)), ("database", slice(3, 12))):
        np.save(tmp_path / f"{name}_codes.npy", codes[rows].astype(np.int8))
        np.save(tmp_path / f"{name}_labels.npy", labels[rows])
        np.save(tmp_path / f"{name}_paths.npy", np.array(paths[rows]))
    args = [
        f"--query_codes={tmp_path / 'query_codes.npy'}",
        f"--query_labels={tmp_path / 'query_labels.npy'}",
        f"--db_codes={tmp_path / 'database_codes.npy'}",
        f"--db_labels={tmp_path / 'database_labels.npy'}",
        "--metrics=map",
        "--noplots",
    ]
    result = run(*args, "--gallery", f"--out={tmp_path / 'report'}")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "report" / "gallery.png").read_bytes()[:8] == PNG_MAGIC
    os.remove(tmp_path / "database_paths.npy")
    result = run(*args, "--gallery", f"--out={tmp_path / 'again'}")
    assert (
        result.returncode == 2 and "--gallery needs the image paths of --db_codes" in result.stderr
    )


def test_the_gallery_spreads_its_queries_over_the_classes():
    """A split sorted by class drew its first 8 queries, all of class 0 (identical rows)."""
    from tfhash.gallery import spread_queries

    labels = np.repeat([2, 0, 1], [5, 9, 2])  # queries in class order, classes of every size
    chosen = spread_queries(labels, 8)
    assert chosen.tolist() == [5, 14, 0, 6, 15, 1, 7, 2]
    assert [labels[q] for q in chosen[:3]] == [0, 1, 2]  # every class before a second of any
    multi = np.array([[0, 1, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1]])  # by the first label
    assert spread_queries(multi, 3).tolist() == [2, 0, 3]


def test_encodes_packed_codes_need_no_bits_and_disagreeing_lengths_are_refused(files, tmp_path):
    """The code length of encode's packed codes comes from its <name>_info.json."""
    arrays = files["arrays"]
    for name, codes, labels in (("query", "q32", "ql"), ("database", "d32", "dl")):
        np.save(tmp_path / f"{name}_codes.npy", arrays[codes])
        np.save(tmp_path / f"{name}_labels.npy", arrays[labels])
        (tmp_path / f"{name}_info.json").write_text(json.dumps({"bits": 32}))
    args = [
        f"--query_codes={tmp_path / 'query_codes.npy'}",
        f"--query_labels={tmp_path / 'query_labels.npy'}",
        f"--db_codes={tmp_path / 'database_codes.npy'}",
        f"--db_labels={tmp_path / 'database_labels.npy'}",
        "--metrics=map",
        "--noplots",
    ]
    result = run(*args, f"--out={tmp_path / 'report'}")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    expected = evaluation.evaluate_codes(
        arrays["q32"], arrays["ql"], arrays["d32"], arrays["dl"], bits=32, metrics=["map"]
    )
    assert report["data"]["bits"] == 32 and report["map"] == expected["map"]
    (tmp_path / "database_info.json").write_text(json.dumps({"bits": 30}))
    result = run(*args, f"--out={tmp_path / 'again'}")
    assert result.returncode == 2 and result.stderr.splitlines() == [
        f"error: {tmp_path / 'query_codes.npy'} and {tmp_path / 'database_codes.npy'} hold "
        "codes of different lengths (30 and 32 bits, by encode's _info.json); score codes of "
        "one model"
    ]
