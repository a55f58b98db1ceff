"""The benchmark runner's bookkeeping: ratios, targets and the table, on hand-made rows.

No timing is asserted here (machines differ; timings live in benchmarks/): these tests
check that a figure is computed, judged and printed right once the seconds are known.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of scripts, not an installed package
    sys.path.insert(0, str(ROOT))

common = importlib.import_module("benchmarks._common")
Row = common.Row

FASTER = Row("convert", "dsxsd, 2 cores", 2.0, "ElementTree loop", 10.0, "speedup", 4.0)
SLOWER = Row("convert", "dsxsd, 1 core", 4.0, "ElementTree loop", 10.0, "speedup", 3.0)
NEAR_LIMIT = Row("pipeline", "make_dataset", 1.2, "decode limit", 1.0, "overhead", 1.25)
OVER_LIMIT = Row("pipeline", "make_dataset", 1.5, "decode limit", 1.0, "overhead", 1.25)
QUICK_ENOUGH = Row("import", "import dsxsd", 0.05, "python -c pass", 0.07, "seconds", 0.3)
TOO_SLOW = Row("pairs", "1M crops", 12.5, "-", None, "seconds", 10.0)
NO_TARGET = Row("pairs", "sampling", 0.5, "pure Python", 2.0, "speedup", None)


@pytest.mark.parametrize(
    "row, ratio, met, figure, goal",
    [
        (FASTER, 5.0, True, "5.00x faster", ">= 4x"),
        (SLOWER, 2.5, False, "2.50x faster", ">= 3x"),
        (NEAR_LIMIT, 1.2, True, "1.20x of the limit", "<= 1.25x"),
        (OVER_LIMIT, 1.5, False, "1.50x of the limit", "<= 1.25x"),
        (QUICK_ENOUGH, None, True, "0.050 s", "< 0.3 s"),
        (TOO_SLOW, None, False, "12.500 s", "< 10 s"),
        (NO_TARGET, 4.0, None, "4.00x faster", "-"),
    ],
)
def test_row_ratio_target_and_wording(row, ratio, met, figure, goal):
    assert row.ratio == (None if ratio is None else pytest.approx(ratio))
    assert row.met is met
    assert row.figure() == figure
    assert row.goal() == goal


def test_a_speedup_exactly_on_target_is_met():
    assert Row("s", "w", 2.0, "b", 10.0, "speedup", 5.0).met is True
    assert Row("s", "w", 10.0, "b", None, "speedup", None).ratio is None


def test_text_table_lines_up_every_column():
    text = common.table([FASTER, TOO_SLOW]).splitlines()
    assert len(text) == 4
    assert text[0].split() == ["stage", "measured", "time", "s", "against", "base", "s", "figure", "target", "met"]
    assert set(text[1].replace(" ", "")) == {"-"}
    # the columns start at the same place on every line
    for word in ("against", "figure", "target", "met"):
        column = text[0].index(word)
        assert text[1][column - 2 : column] == "  "
    assert text[2].split("  ")[0] == "convert"
    assert "2.000" in text[2] and "10.000" in text[2] and "5.00x faster" in text[2]
    assert text[2].rstrip().endswith("yes")
    assert text[3].rstrip().endswith("NO")
    assert " - " in text[3]  # no baseline seconds
    assert len({len(line.rstrip()) for line in text[:2]}) == 1


def test_markdown_table_has_one_cell_per_column():
    lines = common.table([NEAR_LIMIT, NO_TARGET], markdown=True).splitlines()
    assert lines[0] == "| stage | measured | time s | against | base s | figure | target | met |"
    assert lines[1] == "|---|---|---|---|---|---|---|---|"
    assert lines[2] == "| pipeline | make_dataset | 1.200 | decode limit | 1.000 | 1.20x of the limit | <= 1.25x | yes |"
    assert lines[3] == "| pairs | sampling | 0.500 | pure Python | 2.000 | 4.00x faster | - | - |"


def test_runner_lists_missed_targets_only():
    run = importlib.import_module("benchmarks.run")
    misses = run.missed([FASTER, SLOWER, OVER_LIMIT, QUICK_ENOUGH, TOO_SLOW, NO_TARGET])
    assert misses == [
        "convert, vs ElementTree loop: 2.50x faster (target >= 3x)",
        "pipeline, vs decode limit: 1.50x of the limit (target <= 1.25x)",
        "pairs, 1M crops: 12.500 s (target < 10 s)",
    ]


def test_runner_measures_each_stage_in_a_fresh_interpreter():
    run = importlib.import_module("benchmarks.run")
    rows = run.rows_in_fresh_process("import", quick=True)
    assert [row.stage for row in rows] == ["import dsxsd"]
    assert rows[0].kind == "seconds" and rows[0].target == 0.3 and 0 < rows[0].seconds < 5
    assert "benchmarks.bench_import" not in sys.modules  # measured in the other interpreter


@pytest.mark.skipif(os.name != "posix", reason="the stand-in interpreter is a shell script")
def test_runner_reports_a_stage_whose_interpreter_failed(monkeypatch, tmp_path):
    run = importlib.import_module("benchmarks.run")
    failing = tmp_path / "python"
    failing.write_text("#!/bin/sh\necho 'Traceback: boom' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(failing))
    assert run.rows_in_fresh_process("pairs", quick=True) is None


def test_runner_help_lists_the_stages():
    result = subprocess.run([sys.executable, str(BENCHMARKS / "run.py"), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for stage in ("convert", "crop", "pipeline", "pairs", "import"):
        assert stage in result.stdout
    for option in ("--quick", "--only", "--markdown"):
        assert option in result.stdout


def test_runner_refuses_an_unknown_stage_with_a_usage_error():
    result = subprocess.run([sys.executable, str(BENCHMARKS / "run.py"), "--only", "pairs,warp"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown stage(s) warp" in result.stderr


@pytest.mark.tf
def test_gpu_benchmark_counts_the_flops_of_every_convolution_and_dense_layer():
    from dsxsd.train.network import build_model, conv_widths

    bench_gpu = importlib.import_module("benchmarks.bench_gpu")
    model = build_model(image_size=32, width=0.125, head_units=16)
    widths = conv_widths(0.125)  # 8, 16, 32, 64, 64 filters in blocks of 2, 2, 3, 3, 3 convs
    expected, channels, side = 0, 3, 32
    for convs, filters in zip((2, 2, 3, 3, 3), widths):
        for _ in range(convs):
            expected += 2 * side * side * 9 * channels * filters
            channels = filters
        side //= 2
    head = 2 * (side * side * channels) * 16 + 2 * 16 * 1
    assert bench_gpu.forward_flops(model) == 2 * expected + head
    assert common.peak_tflops("NVIDIA H200") == common.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert common.peak_tflops("NVIDIA H100 PCIe") == 756.0 and common.peak_tflops("NVIDIA A100-SXM4-40GB") == 312.0
    assert common.peak_tflops("some chip") is None and common.peak_tflops("x", 100.0) == 100.0


def test_interleaved_takes_turns_and_keeps_each_calls_best():
    order = []

    def call(name, seconds):
        order.append(name)
        return seconds.pop(0)

    first, second = [0.5, 0.2, 0.4], [0.3, 0.6, 0.1]
    best = common.interleaved(3, (call, "a", first), (call, "b", second), self_timed=True)
    assert best == [0.2, 0.1]  # what the calls reported, not how long they took here
    assert order == ["a", "b"] * 3


def test_in_fresh_process_returns_the_seconds_the_script_printed(tmp_path):
    script = tmp_path / "timed.py"
    script.write_text("import sys\nprint('warming up')\nprint(float(sys.argv[1]) / 4)\n")
    assert common.in_fresh_process(str(script), "1.0") == 0.25
    script.write_text("import sys\nsys.exit('no such folder: ' + sys.argv[1])\n")
    with pytest.raises(RuntimeError, match="no such folder: x"):
        common.in_fresh_process(str(script), "x")


@pytest.mark.tf
def test_pipeline_benchmark_drains_every_element_and_times_the_first_pil_pairs(tmp_path):
    import tensorflow as tf

    import dsxsd

    bench = importlib.import_module("benchmarks.bench_pipeline")
    assert bench.drain(tf.data.Dataset.range(7).batch(3)) == 3
    manifest = bench.make_manifest(tmp_path, classes=2, per_class=6, size=16, positives=1)
    train = len(dsxsd.read_pairs(manifest).query("split == 'train'"))
    assert train > 3
    assert bench.pil_loader_epoch(manifest, 16, batch_size=2, limit=3) == 3
    assert bench.pil_loader_epoch(manifest, 16, batch_size=2) == train


def test_convert_benchmark_contenders_write_what_the_baseline_writes(tmp_path):
    """Every dsxsd contender writes the same file, and its first eight columns hold the
    rows xml_to_csv.py writes (which lists files in glob order): the same work is timed."""
    import csv

    bench = importlib.import_module("benchmarks.bench_convert")
    folder = bench.make_files(tmp_path / "Annotations", 30)
    for name in ("baseline", *bench.CONTENDERS):
        assert bench.run_one(name, str(folder), str(tmp_path / f"{name}.csv")) > 0
    written = {(tmp_path / f"{name}.csv").read_bytes() for name in bench.CONTENDERS}
    assert len(written) == 1

    def rows(name: str) -> list[list[str]]:
        with open(tmp_path / f"{name}.csv", encoding="utf-8", newline="") as stream:
            return [row[:8] for row in csv.reader(stream)]

    baseline, dsxsd_rows = rows("baseline"), rows("serial")
    assert baseline[0] == dsxsd_rows[0] == ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"]
    assert len(baseline) > 30 and sorted(baseline[1:]) == sorted(dsxsd_rows[1:])


@pytest.mark.tf
def test_train_benchmark_times_the_pipeline_against_memory_and_counts_flops():
    from dsxsd.train import build_model

    bench = importlib.import_module("benchmarks.bench_train")
    rows = bench.measure(quick=True)  # on this CPU: no GPU, so no row against a peak
    assert len(rows) == 1
    row = rows[0]
    assert (row.stage, row.kind, row.target) == ("train", "speedup", 0.95)
    assert row.baseline == "the same model fed the same batches from memory"
    assert row.seconds > 0 and row.baseline_s > 0
    assert row.ratio == pytest.approx(row.baseline_s / row.seconds)  # pairs/s over pairs/s in memory
    assert "width 0.125, 32 px, batch 8, float32, epochs of 2 steps on cpu" in row.what
    gflops = bench.forward_flops(build_model(32, 0.125)) / 1e9
    assert f"{16 / row.seconds:,.0f} pairs/s, {gflops:.3g} GFLOP/pair forward" in row.what


def test_train_benchmark_puts_a_gpu_epoch_against_the_chips_peak():
    bench = importlib.import_module("benchmarks.bench_train")
    size = bench.Size(1.0, 105, 256, 48, 2, 2)
    flops = 13_000_000_000  # per pair forward; a train step is three forward passes
    result = bench.figures(size, "mixed_bfloat16", 16, "NVIDIA H100 80GB HBM3", 2.0, 1.96, flops)
    epoch_flops = 3 * flops * 256 * 48
    assert result["pairs_per_s"] == 256 * 48 / 2 and result["ratio"] == pytest.approx(0.98)
    assert result["tflops"] == pytest.approx(epoch_flops / 2 / 1e12)  # 240 TFLOP/s
    assert result["fraction_of_peak"] == pytest.approx(epoch_flops / 2 / 1e12 / 989.0)
    speed, peak = bench.rows_of(result)
    assert (speed.kind, speed.target, speed.met) == ("speedup", 0.95, True)
    assert (peak.kind, peak.target) == ("overhead", 2.5)  # 40% of the peak: 2.5x the time at the peak
    assert peak.ratio == pytest.approx(1 / result["fraction_of_peak"]) and peak.met is False
    assert "6,144 pairs/s" in peak.what and "24.2% of peak" in peak.what
    assert "dense bf16 peak (989 TFLOP/s)" in peak.baseline
    # the goal is for the full network under bf16; an unknown chip has no peak to compare
    other_precision = bench.figures(size, "mixed_float16", 16, "NVIDIA H100 PCIe", 1.0, 1.0, flops)
    assert bench.rows_of(other_precision)[1].target is None
    assert len(bench.rows_of(bench.figures(size, "mixed_bfloat16", 16, "Some GPU", 1.0, 1.0, flops))) == 1


@pytest.mark.tf
def test_serve_benchmark_times_the_onnx_command_against_the_keras_one_and_pairs_per_second():
    bench = importlib.import_module("benchmarks.bench_serve")
    speedup, seconds, scoring = bench.measure(quick=True)
    assert (speedup.stage, speedup.kind, speedup.target) == ("serve", "speedup", 5.0)
    assert speedup.baseline == "the same command from model.keras"
    assert "dsxsd predict siamese.onnx a.jpg b.jpg" in speedup.what
    assert speedup.seconds == seconds.seconds > 0 and speedup.baseline_s > 0
    assert (seconds.kind, seconds.target) == ("seconds", 1.0)
    assert (scoring.kind, scoring.target) == ("speedup", None)
    pairs = bench.QUICK.batch * 2  # two calls of one batch, the best pass kept
    assert f"{pairs / scoring.seconds:,.0f} pairs/s (Keras {pairs / scoring.baseline_s:,.0f})" in scoring.what


@pytest.mark.tf
def test_quality_benchmark_trains_evaluates_and_reports_each_recipe():
    bench = importlib.import_module("benchmarks.bench_quality")
    (result,) = bench.measure(quick=True)
    assert (result.protocol, result.recipe, result.n_way) == ("small", "--preset cpu --epochs 1 --image-size 32", 5)
    assert (result.epochs, result.best_epoch) == (1, 1)
    assert result.train_s > 0
    assert 0.0 <= result.roc_auc <= 1.0 and 0.0 <= result.eer <= 1.0 and 0.0 <= result.one_shot <= 1.0
    row = bench.table([result]).splitlines()[2]
    assert row.startswith("| small | --preset cpu --epochs 1 --image-size 32 | ")
    assert f"| {result.roc_auc:.3f} | {result.eer:.3f} | {result.one_shot:.3f} (5-way) |" in row


@pytest.mark.tf
def test_frozen_benchmark_times_a_head_epoch_on_features_against_the_tower_per_pair():
    bench = importlib.import_module("benchmarks.bench_frozen")
    speed, ceiling = bench.measure(quick=True)
    assert (speed.stage, speed.kind, speed.target) == ("frozen backbone", "speedup", None)
    assert (ceiling.kind, ceiling.target) == ("seconds", 0.5) and ceiling.seconds == speed.seconds > 0
    assert speed.baseline.startswith("the model, tower frozen, on image pairs: ")
    assert "width 0.125, 32 px, batch 32" in speed.what
    # The epoch on images is scaled from its timed batches: the same pairs both ways.
    pairs = int(speed.what.split("head epoch on cached features: ")[1].split(" pairs")[0].replace(",", ""))
    assert f"{pairs / speed.seconds:,.0f} pairs/s" in speed.what
    images_per_s = float(speed.baseline.split(": ")[1].split(" pairs/s")[0].replace(",", ""))
    assert pairs / speed.baseline_s == pytest.approx(images_per_s, rel=0.01, abs=1)


def test_frozen_benchmark_scales_the_epoch_on_images_from_its_timed_batches():
    bench = importlib.import_module("benchmarks.bench_frozen")
    size = bench.Size(0.125, 64, 32, 8, 3, 2)
    result = bench.figures(size, 3000, 900, 94, 8, head_s=0.2, images_s=2.56, features_s=1.5)
    assert result["slow_pairs"] == 256 and result["images_pairs_per_s"] == pytest.approx(100.0)
    assert result["images_epoch_s"] == pytest.approx(30.0) and result["head_pairs_per_s"] == pytest.approx(15000.0)
    speed, ceiling = bench.rows_of(result)
    assert speed.ratio == pytest.approx(150.0) and speed.figure() == "150.00x faster"
    assert "3,000 pairs" in speed.what and "features of 900 images computed once in 1.50 s" in speed.what
    assert "100 pairs/s (first 256 pairs timed, scaled to the epoch)" in speed.baseline
    assert ceiling.met is True and bench.rows_of({**result, "head_s": 0.6})[1].met is False


def test_search_benchmark_row_puts_the_approximate_query_against_the_exact_one_with_its_recall():
    bench = importlib.import_module("benchmarks.bench_search")
    result = {"entries": 50_000, "faiss_index": "Flat", "candidates": None, "recall_at_10": 0.97,
              "p50_ms": 4.0, "exact_p50_ms": 60.0, "peak_rss_mb": 150.4}
    (row,) = bench.rows_of(result)
    assert (row.stage, row.kind, row.target) == ("search", "speedup", 10.0)
    assert row.ratio == pytest.approx(15.0) and row.met is True
    assert row.baseline == "the exact head search of the same index"
    assert row.what == ("approximate index (Flat), 50,000 entries, default candidates: recall@10 0.970 "
                        "(met: >= 0.95), 150 MB resident")
    assert "recall@10 0.900 (MISSED: >= 0.95)" in bench.rows_of({**result, "recall_at_10": 0.9})[0].what


@pytest.mark.tf
@pytest.mark.serve
def test_search_benchmark_quick_measures_recall_and_both_searches():
    bench = importlib.import_module("benchmarks.bench_search")
    (row,) = bench.measure(quick=True)
    assert row.stage == "search" and row.seconds > 0 and row.baseline_s > 0
    assert f"{bench.QUICK_ENTRIES:,} entries" in row.what
    recall = float(row.what.split("recall@10 ")[1].split(" ")[0])
    assert 0.0 <= recall <= 1.0
