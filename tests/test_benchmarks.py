"""The benchmark scripts print their tables from the committed results, and BENCHMARKS.md is what
they print (benchmarks/benchmarks_md.py), not a hand-written copy."""

import json
import os
import subprocess
import sys

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(PROJECT, "benchmarks", "throughput.json")


def printed(script: str, results: str) -> tuple[str, dict]:
    """What `benchmarks/SCRIPT --table RESULTS` prints, and the results it printed."""
    done = subprocess.run([sys.executable, os.path.join(PROJECT, "benchmarks", script), "--table", results],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout, json.load(open(results))


def one_machine(tmp_path, kind: str | None = None) -> tuple[str, dict]:
    """A results file holding one kind of machine's run (the first, or `kind`), and that run."""
    saved = json.load(open(RESULTS))
    r = saved[kind or next(iter(saved))]
    path = tmp_path / "one.json"
    json.dump({r["machine"]["cpu"]: r}, open(path, "w"))
    return str(path), r


def test_table_from_committed_results_has_every_figure(tmp_path):
    out, _ = printed("throughput.py", one_machine(tmp_path)[0])
    r = next(iter(json.load(open(RESULTS)).values()))
    assert f"{r['ratios']['b/a']:.2f}" in out and f"{r['decode']['ms_per_image']:.2f} ms" in out
    assert f"{r['memory_8000']['images']:,}" in out and r["machine"]["cpu"] in out
    assert f"{r['decode']['shard_ms_threads']:.0f} ms on {r['decode']['threads']}" in out


def test_table_of_a_run_of_some_groups_prints_only_their_rows(tmp_path):
    """`--only fast,ceiling` saves those rows and their ratios alone; the table prints what is there."""
    _, r = one_machine(tmp_path)
    rows = ("machine", "e_reference_64_bf16", "e_extract_64_bf16", "f_zero_cost_64", "f_zero_cost_64_256", "f_pillow_64",
            "f_pillow_64_256")
    partial = {k: r[k] for k in rows} | {"only": ["fast", "ceiling"]}
    partial["ratios"] = {k: r["ratios"][k] for k in ("e/a_64_bf16", "f_per_core/pillow", "f256_per_core/pillow")}
    json.dump({r["machine"]["cpu"]: partial}, open(tmp_path / "partial.json", "w"))
    out, _ = printed("throughput.py", str(tmp_path / "partial.json"))
    assert f"e/e' = {r['ratios']['e/a_64_bf16']:.2f}" in out and f"per core {r['ratios']['f_per_core/pillow']:.2f} x" in out
    assert f"{r['f_pillow_64_256']['images_per_second']:.1f}" in out
    assert "steady vs reference" not in out and "codec" not in out and "(b) catdog extract" not in out


def test_object_store_table_from_committed_results():
    out, r = printed("object_store.py", os.path.join(PROJECT, "benchmarks", "object_store.json"))
    assert f"{r['decode_s3_delay']:.1f}" in out and f"{r['gets_per_image']:.2f}" in out
    assert f"{r['extract_s3']['requests_per_image']:.2f}" in out


def test_scale_table_from_committed_results():
    out, r = printed("scale.py", os.path.join(PROJECT, "benchmarks", "scale.json"))
    for kind in ("folders", "tables"):
        for m in r[kind]:
            assert f"{m['images']:,}" in out and f"{m['first']['peak_rss_mb']:.0f}" in out
    assert "bytes per image" in out


def test_incremental_table_from_committed_results():
    out, r = printed("incremental.py", os.path.join(PROJECT, "benchmarks", "incremental.json"))
    assert f"{r['rerun']['pipeline_seconds']:.1f}" in out and f"{r['listing']['compare_seconds']:.2f} s" in out
    assert r["rerun"]["processed"] == r["added"] and r["rerun"]["changes"] in out


def test_similar_table_from_committed_results():
    out, r = printed("similar.py", os.path.join(PROJECT, "benchmarks", "similar.json"))
    assert f"{r['map']['seconds']:.1f} s" in out
    for entry in r["sets"]:
        for run in entry["runs"]:
            assert f"| {run['seconds']:.1f} s | {run['search_seconds']:.1f} s | {run['peak_rss_gib']:.2f} GiB" in out
            assert run["images"] >= entry["images"] and run["planted_found"] <= 1


def test_similar_on_ray_table_from_committed_results():
    out, r = printed("similar_ray.py", os.path.join(PROJECT, "benchmarks", "similar_ray.json"))
    for entry in r["sets"]:
        for run in entry["runs"]:
            assert f"| {run['executor']} | {run['seconds']:.0f} s | {run['driver_peak_gib']:.2f} GiB |" in out
            assert run["images"] == entry["images"] and 0 < run["planted_found"] <= 1


def test_predict_table_from_committed_results():
    out, r = printed("predict.py", os.path.join(PROJECT, "benchmarks", "predict.json"))
    extracts = [x["steady_images_per_second"] for x in r["runs"] if x["kind"] == "extract"]
    predicted = [x["steady_images_per_second"] for x in r["runs"] if x["kind"] == "predict"]
    assert f"{predicted[0] / (sum(extracts) / len(extracts)):.3f}" in out
    for x in r["runs"]:
        assert f"| {x['kind']} | {x['images']:,} | {x['seconds']:.1f} s | {x['steady_images_per_second']:.1f} images/s" in out
        assert x["images"] == r["images"] and x["errors"] == 0


def test_audit_table_from_committed_results():
    out, r = printed("audit.py", os.path.join(PROJECT, "benchmarks", "audit.json"))
    for run in r["runs"]:
        assert f"| {run['precision']:.3f} | {run['recall']:.3f} | {run['precision_at_planted']:.3f} |" in out
        assert run["planted"] == round(run["images"] * run["noise"])


def test_audit_on_ray_table_from_committed_results():
    out, r = printed("audit_ray.py", os.path.join(PROJECT, "benchmarks", "audit_ray.json"))
    for entry in r["sets"]:
        for run in entry["runs"]:
            assert f"| {run['executor']} | {'streamed' if run['streamed'] else 'in memory'} | {run['seconds']:.0f} s " \
                   f"| {run['driver_peak_gib']:.2f} GiB |" in out
            assert run["images"] == entry["images"] and run["planted"] == round(entry["images"] * r["noise"])
        if entry["compared"]:
            assert f"images, ±{entry['compared']['largest_gap']:.1e} |" in out


def test_backbones_table_from_committed_results():
    out, r = printed("backbones.py", os.path.join(PROJECT, "benchmarks", "backbones.json"))
    for row in r["rows"]:
        assert f"{row['ratio']:.2f}" in out and f"{row['extract']['images_per_second']:.1f}" in out
        assert row["ratio"] == row["extract"]["images_per_second"] / row["reference"]["images_per_second"]


def test_estimate_table_from_committed_results():
    out, r = printed("estimate.py", os.path.join(PROJECT, "benchmarks", "estimate.json"))
    e, x = r["estimate"], r["run"]
    assert f"{e['wall_seconds']:.1f}" in out and f"{x['wall_seconds']:.1f}" in out
    assert f"{e['wall_seconds'] / x['wall_seconds']:.2f}" in out


def test_table_prints_every_run_of_a_run_saved_with_its_shards(tmp_path):
    """Each catdog run's rate, steal and widest shard gap, computed here again from its records."""
    import numpy as np

    out, _ = printed("throughput.py", one_machine(tmp_path)[0])
    _, r = one_machine(tmp_path)
    for label, key in (("b", "b_extract_fp32"), ("d", "d_extract_bf16")):
        line = next(x for x in out.splitlines() if x.startswith(f"({label}) run by run: "))
        runs = r[key]["runs"]
        assert len(runs) == len(r[key]["samples"]) == line.count("widest shard gap")
        for run in runs:
            gaps = np.diff([t for t, _ in run["arrivals"]])
            assert (f"{run['images_per_second']:.1f} (steal {run['machine_cpu']['steal']:.1%}, "
                    f"widest shard gap {gaps.max() / np.median(gaps):.2f} x the median)") in line
            assert sum(n for _, n in run["arrivals"]) == r[key]["images"]


def test_benchmarks_md_is_what_the_scripts_print():
    sys.path.insert(0, os.path.join(PROJECT, "benchmarks"))
    try:
        import benchmarks_md
    finally:
        sys.path.pop(0)
    assert open(os.path.join(PROJECT, "BENCHMARKS.md")).read() == benchmarks_md.markdown()
