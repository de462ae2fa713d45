"""Side-by-side throughput, memory and Parquet measurements for catdog extract, in one run.

    python benchmarks/throughput.py ../shared/data/cats_and_dogs_small    # measure, save under this machine's kind
    python benchmarks/throughput.py --table benchmarks/throughput.json     # print the saved runs again

Each measurement runs in a fresh process (so peak RSS is its own): (a) the conv base alone on
pre-decoded tensors, (b) `catdog extract` end-to-end with its timeline, (c) the tutorial's loop,
(d) catdog in bf16; (e) the fast-model regime (bf16, 64 px, 8,000 photos) against its own
reference; (f) the pipeline's ceiling with a zero-cost model against a plain Pillow loop; then
memory at 1,000 / 8,000 images, decode time per photo, JPEG draft mode, Parquet codecs, read-back
speed, and the conv base's FLOPs. The results file holds the last run on each kind of machine (its
CPU and the instructions that decide the precision path); `--only` replaces the rows it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

SIZE, SMALL, BATCH = 150, 64, 32
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "throughput.json")


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def files(root: str, n: int | None = None) -> list:
    from catdog import storage
    from catdog.extraction import imagefolder

    folder = storage.resolve(root)
    return [folder.join(p) for p in imagefolder.scan(folder).paths[:n]]


def decoded_pixels(root: str, n: int, size: int = SIZE) -> np.ndarray:
    from catdog.config import DecodeConfig
    from catdog.vision.images import decode_files

    return decode_files(files(root, n), DecodeConfig(size)).pixels


def reference(root: str, n: int, precision: str, size: int = SIZE) -> dict:
    """(a) The reference: plain keras.applications.VGG16(include_top=False) under the same precision
    policy, called through tf.function with training=False on ready float32 batches of 32 (decoded
    and preprocessed beforehand, so only the model is timed)."""
    import keras
    import tensorflow as tf

    from catdog.vision.convbase import POLICIES

    pixels = decoded_pixels(root, n, size)
    keras.mixed_precision.set_global_policy(POLICIES[precision])
    model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))
    call = tf.function(lambda x: model(x, training=False))
    batches = [keras.applications.vgg16.preprocess_input(pixels[i : i + BATCH].astype(np.float32))
               for i in range(0, n, BATCH)]
    call(batches[0]).numpy()  # trace and warm up
    start = time.perf_counter()
    for batch in batches:
        call(batch).numpy()
    return {"images_per_second": n / (time.perf_counter() - start), "peak_rss": peak_rss()}


def decode_time(root: str, n: int) -> dict:
    """CPU time to read, decode and resize one photo to 150x150 (Pillow, one core); and the wall time
    of a 256-photo shard at 64 px decoded in one thread and in as many as the machine has cores, as an
    embedding actor holding them all decodes its shards (alternating, the median of five each)."""
    from catdog.config import DecodeConfig
    from catdog.vision.images import decode_files

    chosen = files(root, n)
    decode_files(chosen[:10], DecodeConfig(SIZE))  # warm the page cache and Pillow's imports
    start = time.process_time()
    decode_files(chosen, DecodeConfig(SIZE))
    ms_per_image = (time.process_time() - start) / len(chosen) * 1000
    shard, cores = files(root, 256), os.cpu_count() or 1
    walls: dict[int, list[float]] = {1: [], cores: []}
    for _ in range(5):
        for threads in walls:
            begin = time.perf_counter()
            decode_files(shard, DecodeConfig(SMALL), threads)
            walls[threads].append(time.perf_counter() - begin)
    median_ms = {threads: float(np.median(w)) * 1000 for threads, w in walls.items()}
    return {"ms_per_image": ms_per_image, "images": len(chosen), "threads": cores,
            "shard_ms_one_thread": median_ms[1], "shard_ms_threads": median_ms[cores]}


def pillow_loop(root: str, size: int, passes: int = 3) -> dict:
    """(f') The plain loop a zero-cost model could at best keep up with on one core: Pillow's open,
    decode and resize of every photo, one after another, the pixels kept in a numpy array. `passes`
    times over the photos after a warm-up pass: one pass of 2,000 photos takes a second or two, and
    single passes spread by several per cent."""
    from PIL import Image

    chosen = [f.path for f in files(root)]

    def one_pass() -> float:
        start = time.perf_counter()
        for path in chosen:
            with Image.open(path) as image:
                np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))
        return time.perf_counter() - start

    one_pass()
    seconds = sum(one_pass() for _ in range(passes))
    return {"images_per_second": len(chosen) * passes / seconds, "images": len(chosen), "passes": passes}


def _zero_cost_model() -> None:
    """Runs in every Ray worker of the zero-cost part (a worker_process_setup_hook): the conv base
    is replaced by zeros of the right shape, so only the pipeline around it is left to measure."""
    from catdog.vision import convbase

    class ZeroCost:
        def __init__(self, weights, config) -> None:
            self.config, self.dim, self.batch_size = config, convbase.feature_dim(config.image_size), 0

        def embed(self, pixels: np.ndarray) -> np.ndarray:
            return np.zeros((len(pixels), self.dim), np.float32)

    convbase.ConvBase = ZeroCost
    convbase.configure_devices = lambda cpus, inter_op_threads=1: {"intra_op_threads": 0}


def shard_arrivals() -> list[tuple[float, int]]:
    """From now on in this process, every shard the pipeline hands back to `catdog extract` is
    recorded as (perf_counter at its arrival, images in it): a slow run then shows whether it
    was slow throughout or stalled on a few shards."""
    from catdog.extraction import pipeline

    arrivals = []
    shards = pipeline.extract_shards

    def timed(*args, **kwargs):
        for row in shards(*args, **kwargs):
            arrivals.append((time.perf_counter(), int(row["rows"]) + int(row["errors"])))
            yield row

    pipeline.extract_shards = timed
    return arrivals


def since_first(arrivals: list[tuple[float, int]]) -> list[list]:
    """The arrivals as saved: [seconds since the first shard, images in the shard]."""
    return [[round(t - arrivals[0][0], 3), n] for t, n in arrivals]


def zero_cost(root: str, size: int, out: str, shard_size: int | None) -> dict:
    """(f) The pipeline's ceiling: `catdog extract` with the embed step replaced inside this benchmark
    (never a user-facing option), on one fake GPU as a GPU node runs it: the actor reserves one core,
    decode tasks share every core (half a CPU each), the actor's included. The rate is over the
    second half of the shards: decoding starts while the actor starts, and the backlog it builds
    meanwhile would inflate the first half. `shard_size` None: catdog's default for a GPU actor."""
    import ray

    from catdog.config import ExtractConfig
    from catdog.extraction import extract

    arrivals = shard_arrivals()
    ray.init(num_gpus=1, include_dashboard=False, logging_level="ERROR",
             runtime_env={"worker_process_setup_hook": _zero_cost_model})
    summary = extract.run(ExtractConfig(root=root, out=out, weights="none", image_size=size, overwrite=True, progress=False,
                                        shard_size=shard_size))
    half = len(arrivals) // 2
    images = sum(n for _, n in arrivals[half + 1:])
    with open(os.path.join(out, "manifest.json")) as f:
        used = json.load(f)["compat"]["shard_size"]
    return {"images_per_second": images / (arrivals[-1][0] - arrivals[half][0]), "with_startup": summary.images_per_second,
            "images": summary.processed, "shard_size": used, "cpus": os.cpu_count(),
            "arrivals": since_first(arrivals), "timeline": summary.timeline}


def jpeg_draft(root: str, n: int) -> dict:
    """Pillow's JPEG draft mode (libjpeg scaling by 1/2, 1/4, 1/8 while decoding) against a full
    decode: CPU time per photo, and the cosine of the conv base's features (random weights, fp32)."""

    from catdog.config import DecodeConfig, EmbedConfig
    from catdog.vision import convbase
    from catdog.vision.images import decode_files

    chosen = files(root, n)
    results = {}
    for size in (150, 64):
        base = convbase.ConvBase(convbase.resolve_weights("none", 0, size), EmbedConfig(size, BATCH))
        X = {}
        for draft in (False, True):
            config = DecodeConfig(size, jpeg_draft=draft)
            decode_files(chosen[:10], config)
            start = time.process_time()
            pixels = decode_files(chosen, config).pixels
            ms = (time.process_time() - start) / len(chosen) * 1000
            X[draft] = base.embed(pixels)
            results[f"{size}_{'draft' if draft else 'full'}_ms"] = ms
        cos = (X[True] * X[False]).sum(1) / (np.linalg.norm(X[True], axis=1) * np.linalg.norm(X[False], axis=1) + 1e-12)
        results[f"{size}_cosine_mean"], results[f"{size}_cosine_min"] = float(cos.mean()), float(cos.min())
    return {**results, "images": len(chosen)}


def catdog_extract(root: str, precision: str, out: str, size: int = SIZE) -> dict:
    """(b), (d), (e) The whole job on local Ray: scan, decode, embed, write Parquet."""
    from catdog.config import ExtractConfig
    from catdog.extraction import extract

    config = ExtractConfig(root=root, out=out, weights="none", image_size=size, batch_size=BATCH, precision=precision,
                           overwrite=True, progress=False)
    arrivals = shard_arrivals()
    with ActorMemory() as memory:
        summary = extract.run(config)
    return {"images_per_second": summary.steady_images_per_second, "with_startup": summary.images_per_second,
            "startup_seconds": summary.startup_seconds, "images": summary.images, "peak_rss": peak_rss(),
            "timeline": summary.timeline, "arrivals": since_first(arrivals),
            "actor_peak_rss": [memory.peak_rss], "actor_peak_uss": [memory.peak_uss]}


class ActorMemory:
    """Peak RSS and USS of the embedding actors, sampled from outside every half second (the actors
    carry no memory probes): Ray's workers of this process's local Ray, by their process title."""

    def __init__(self, every_s: float = 0.5) -> None:
        import threading

        self.every_s, self.peak_rss, self.peak_uss = every_s, 0, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "ActorMemory":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def _sample(self) -> None:
        import psutil

        while not self.stop.wait(self.every_s):
            for p in psutil.Process().children(recursive=True):
                try:
                    if "Embedder" in " ".join(p.cmdline()):
                        info = p.memory_full_info()
                        self.peak_rss, self.peak_uss = max(self.peak_rss, info.rss), max(self.peak_uss, info.uss)
                except psutil.Error:
                    pass  # exited meanwhile


def tutorial(root: str) -> dict:
    """(c) The tutorial's loop: a Keras directory dataset, batch 20, predict, copy into a preallocated array."""
    import keras

    from catdog.extraction import imagefolder

    keras.utils.set_random_seed(0)
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    image_set = imagefolder.scan(root)
    total, rate_images, rate_seconds, i0 = 0, 0, 0.0, 0
    for split in sorted(set(image_set.splits)):
        data = keras.utils.image_dataset_from_directory(os.path.join(root, split), image_size=(SIZE, SIZE), batch_size=20,
                                                        label_mode="binary", shuffle=False, verbose=False)
        n = sum(s == split for s in image_set.splits)
        features = np.zeros((n, 4, 4, 512))  # float64, as np.zeros makes it in the tutorial
        labels = np.zeros(n)
        i = 0
        start = time.perf_counter()
        for batch, y in data:
            out = base.predict(keras.applications.vgg16.preprocess_input(batch), verbose=0)
            features[i : i + len(out)], labels[i : i + len(out)] = out, y.numpy().ravel()
            i += len(out)
            if total == 0 and i == 20:  # first batch compiles the graph: leave it out of the rate
                start, i0 = time.perf_counter(), i
        seconds = time.perf_counter() - start
        rate_images += i - (i0 if total == 0 else 0)
        rate_seconds += seconds
        total += i
        del features
    return {"images_per_second": rate_images / rate_seconds, "images": total, "peak_rss": peak_rss()}


def parquet_codecs(out: str) -> dict:
    """Size, write and read speed of each codec on real features from (b)."""
    import pyarrow.parquet as pq

    from catdog.store import features

    table = features.dataset(out).to_table()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for codec in ("none", "snappy", "lz4", "zstd"):
            path = os.path.join(tmp, f"{codec}.parquet")
            start = time.perf_counter()
            pq.write_table(table, path, compression=codec, use_dictionary=["label_name"])
            write = time.perf_counter() - start
            start = time.perf_counter()
            features.arrays(pq.read_table(path))
            read = time.perf_counter() - start
            size = os.path.getsize(path)
            results[codec] = {"bytes_per_image": size / table.num_rows, "write_mb_s": table.nbytes / write / 1e6,
                              "read_mb_s": table.nbytes / read / 1e6}
    start = time.perf_counter()
    X, _, _ = features.load(out)
    results["load_mb_s"] = X.nbytes / (time.perf_counter() - start) / 1e6
    return results


def conv_base_flops(size: int = SIZE) -> float:
    """Multiply-adds x2 of VGG16's 13 3x3 convolutions at size x size."""
    channels = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
    pools_before = [0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    flops = 0.0
    for (cin, cout), pools in zip(channels, pools_before):
        side = size
        for _ in range(pools):
            side //= 2
        flops += 2 * side * side * cin * cout * 9
    return flops


def replicate(root: str, copies: int, into: str) -> str:
    """A bigger folder of the same photos, by symlinks: copies x the images, same layout."""
    for c in range(copies):
        for dirpath, _, files in os.walk(root):
            rel = os.path.relpath(dirpath, root)
            os.makedirs(os.path.join(into, rel), exist_ok=True)
            for f in files:
                os.symlink(os.path.join(os.path.abspath(dirpath), f), os.path.join(into, rel, f"{c}_{f}"))
    return into


def subset(root: str, per_class: int, into: str) -> str:
    for dirpath, _, files in os.walk(os.path.join(root, "train")):
        rel = os.path.relpath(dirpath, root)
        os.makedirs(os.path.join(into, rel), exist_ok=True)
        for f in sorted(files)[:per_class]:
            os.symlink(os.path.join(os.path.abspath(dirpath), f), os.path.join(into, rel, f))
    return into


def cosine(out_a: str, out_b: str) -> dict:
    from catdog.store import features

    a, b = features.load(out_a), features.load(out_b)
    assert list(a.paths) == list(b.paths)
    cos = (a.X * b.X).sum(1) / (np.linalg.norm(a.X, axis=1) * np.linalg.norm(b.X, axis=1) + 1e-12)
    return {"mean": float(cos.mean()), "min": float(cos.min())}


def run_part(part: str, *args: str) -> dict:
    """One measurement in its own process, so its peak RSS and thread pools are its own; its wall
    time from process start to exit is what a user of the whole command waits for."""
    start, before = time.perf_counter(), _cpu_jiffies()
    done = subprocess.run([sys.executable, __file__, "--part", part, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{part} failed:\n{done.stderr[-3000:]}")
    after = _cpu_jiffies()
    total = after["total"] - before["total"]
    machine_cpu = {k: round((after[k] - before[k]) / total, 4) for k in ("busy", "steal")}
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_seconds": time.perf_counter() - start,
            "machine_cpu": machine_cpu}


def _cpu_jiffies() -> dict[str, int]:
    """The machine's CPU time so far (/proc/stat): busy, stolen by the hypervisor, total. A part's
    share of steal says whether a slow run had less machine, not slower code."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return {"busy": user + nice + system + irq + softirq, "steal": steal,
            "total": user + nice + system + idle + iowait + irq + softirq + steal}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("args", nargs="*", help="the image folder (with --part: that part's arguments)")
    parser.add_argument("--json", default=RESULTS, help="the results file, one entry per kind of machine")
    parser.add_argument("--table", metavar="RESULTS_JSON", help="only print the tables of the saved runs")
    parser.add_argument("--rounds", type=int, default=2, help="catdog runs per bracketed row, each followed by a reference run")
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--only-draft", action="store_true", help="measure JPEG draft mode alone, into the --json results")
    parser.add_argument("--only", help=f"measure only these groups (comma-separated: {', '.join(GROUPS)}; 'other' needs "
                                       "'model' before it) into a results file of their own")
    args = parser.parse_args()
    if args.table:
        with open(args.table) as f:
            print(tables(json.load(f)))
        return
    if args.part:
        parts = {"reference": lambda r, n, p, s: reference(r, int(n), p, int(s)),
                 "extract": lambda r, p, o, s: catdog_extract(r, p, o, int(s)), "tutorial": tutorial,
                 "parquet": parquet_codecs, "cosine": cosine, "decode": lambda r, n: decode_time(r, int(n)),
                 "draft": lambda r, n: jpeg_draft(r, int(n)), "zero_cost": lambda r, s, o, n: zero_cost(r, int(s), o, None if n == "default" else int(n)),
                 "pillow": lambda r, s: pillow_loop(r, int(s))}
        print(json.dumps(parts[args.part](*args.args)))
        return
    if len(args.args) != 1:
        parser.error("give the image folder")
    if args.only_draft:
        r = save(args.json, {"machine": machine(), "jpeg_draft": run_part("draft", os.path.abspath(args.args[0]), "200"),
                             "only": ["draft"]})
        print(table(r))
        return
    only = tuple(args.only.split(",")) if args.only else ()
    if any(g not in GROUPS for g in only):
        parser.error(f"--only takes {', '.join(GROUPS)}")
    r = save(args.json, measure(os.path.abspath(args.args[0]), tempfile.mkdtemp(prefix="catdog-bench-"), args.rounds, only))
    print(table(r))


def save(path: str, r: dict) -> dict:
    """Keep `r` as the entry of this machine's kind in the results file: a whole run replaces it, a
    partial one (`--only`) replaces the rows and ratios it measured. Returns the entry."""
    saved = json.load(open(path)) if os.path.exists(path) else {}
    kind = r["machine"]["cpu"]
    if r.get("only") and kind in saved:
        ratios = {**saved[kind].get("ratios", {}), **r.get("ratios", {})}
        r = {**saved[kind], **{k: v for k, v in r.items() if k != "only"}, "ratios": ratios}
    saved[kind] = r
    with open(path, "w") as f:
        json.dump(saved, f, indent=2)
    return r


def tables(saved: dict) -> str:
    """One table per kind of machine, the newest run first."""
    runs = sorted(saved.values(), key=lambda r: r["machine"].get("date", ""), reverse=True)
    # The other machines' tables stop at their rates and ratios: their memory, Parquet and decode
    # figures are the newest machine's within a few %, and BENCHMARKS.md stays short.
    return "\n\n".join(f"### {r['machine']['cpu']}, {r['machine'].get('date', 'undated')}\n\n{table(r, full=i == 0)}"
                        for i, r in enumerate(runs))


def bracketed(reference: tuple, extract: tuple, rounds: int) -> tuple[dict, dict]:
    """The reference measured before catdog and after each of its `rounds` runs; each side's rate is
    the mean of its runs. A machine's speed drifts by several % within minutes, and one catdog run on
    2,000 photos moves by a few % from run to run: one sample of each is noise."""
    refs = [run_part(*reference)]
    runs = []
    for _ in range(rounds):
        runs.append(run_part(*extract))
        refs.append(run_part(*reference))
    return _mean_of(refs, ("images_per_second",)), _mean_of(runs, ("images_per_second", "with_startup", "process_seconds"))


def _mean_of(runs: list[dict], keys: tuple[str, ...]) -> dict:
    """The first run's record (timeline, memory) with the mean of `keys` over all runs, each run's
    rate as `samples`, and each run's own timeline, shard arrivals and machine CPU as `runs`."""
    mean = {k: sum(r[k] for r in runs) / len(runs) for k in keys}
    each = [{k: r[k] for k in ("images_per_second", "process_seconds", "timeline", "arrivals", "machine_cpu") if k in r}
            for r in runs]
    # The timeline is the first run's, so its exit must be too, not the mean.
    return {**runs[0], **mean, "samples": [r["images_per_second"] for r in runs], "runs": each,
            "first_process_seconds": runs[0]["process_seconds"]}


def measure(root: str, work: str, rounds: int, only: tuple[str, ...] = ()) -> dict:
    """Every row, or only the groups named (see GROUPS): measure again what a change touched without
    the whole run (an hour on a slow machine)."""
    photos = subset(root, 1000, f"{work}/photos")  # the train split: 2,000 photos
    many = replicate(photos, 4, f"{work}/many")  # 8,000 (the 2,000 four times, by symlink)
    r = {"machine": machine()}
    groups = only or tuple(GROUPS)
    for group in groups:
        GROUPS[group](r, root, work, photos, many, rounds)
    r["ratios"] = ratios(r)
    if only:
        r["only"] = list(only)
    return r


def _model_rows(r: dict, root: str, work: str, photos: str, many: str, rounds: int) -> None:
    r["a_reference_fp32"], r["b_extract_fp32"] = bracketed(("reference", photos, "512", "fp32", str(SIZE)),
                                                           ("extract", photos, "fp32", f"{work}/fp32", str(SIZE)), rounds)
    r["c_tutorial"] = run_part("tutorial", subset(root, 250, f"{work}/few"))
    r["a_reference_bf16"], r["d_extract_bf16"] = bracketed(("reference", photos, "512", "bf16", str(SIZE)),
                                                           ("extract", photos, "bf16", f"{work}/bf16", str(SIZE)), rounds)


def _fast_rows(r: dict, root: str, work: str, photos: str, many: str, rounds: int) -> None:
    r["e_reference_64_bf16"], r["e_extract_64_bf16"] = bracketed(("reference", photos, "1024", "bf16", str(SMALL)),
                                                                 ("extract", many, "bf16", f"{work}/small", str(SMALL)), rounds)


def _ceiling_rows(r: dict, root: str, work: str, photos: str, many: str, rounds: int) -> None:
    # 32,000 photos: with 8,000 the shards decoded while the actor starts were a large part of the second
    # half, and shards of 1024 read 1.5x the rate two decoding cores can give. The plain loop brackets
    # each zero-cost run, as the reference brackets catdog's.
    ceiling = replicate(photos, 16, f"{work}/ceiling")
    pillow = ("pillow", photos, str(SMALL))
    r["f_pillow_64"], r["f_zero_cost_64"] = bracketed(pillow, ("zero_cost", ceiling, str(SMALL), f"{work}/zero", "default"),
                                                      rounds)
    r["f_pillow_64_256"], r["f_zero_cost_64_256"] = bracketed(pillow, ("zero_cost", ceiling, str(SMALL), f"{work}/zero", "256"),
                                                              rounds)


def _other_rows(r: dict, root: str, work: str, photos: str, many: str, rounds: int) -> None:
    r["bf16_cosine"] = run_part("cosine", f"{work}/fp32", f"{work}/bf16")
    r["parquet"] = run_part("parquet", f"{work}/fp32")
    r["decode"] = run_part("decode", photos, "200")
    r["jpeg_draft"] = run_part("draft", photos, "200")
    r["memory_1000"] = run_part("extract", subset(root, 500, f"{work}/small1000"), "fp32", f"{work}/m1", str(SIZE))
    r["memory_8000"] = run_part("extract", many, "fp32", f"{work}/m8", str(SIZE))
    r["flops_per_image"] = conv_base_flops()


# In this order: the other rows read what the model rows wrote (cosine, Parquet codecs).
GROUPS = {"model": _model_rows, "fast": _fast_rows, "ceiling": _ceiling_rows, "other": _other_rows}


def ratios(r: dict) -> dict:
    """Each ratio whose rows were measured (all of them in a whole run)."""
    rate = lambda k: r[k]["images_per_second"] or float("nan")  # noqa: E731  (no steady rate under 4 shards)
    # The reference's time for the same photos, against catdog's whole command (process start to exit).
    whole = lambda k, ref: r[k]["images"] / rate(ref) / r[k]["process_seconds"]  # noqa: E731
    peak = lambda k, m: max(r["memory_8000"][k]) / max(r["memory_1000"][k]) if m else r["memory_8000"][k] / r["memory_1000"][k]  # noqa: E731
    per_core = lambda k, loop: rate(k) / r[k]["cpus"] / rate(loop)  # noqa: E731
    loop_256 = "f_pillow_64_256" if "f_pillow_64_256" in r else "f_pillow_64"  # runs saved before: one loop for both
    wanted = {"b/a": (("b_extract_fp32", "a_reference_fp32"), lambda: rate("b_extract_fp32") / rate("a_reference_fp32")),
              "d/a_bf16": (("d_extract_bf16", "a_reference_bf16"), lambda: rate("d_extract_bf16") / rate("a_reference_bf16")),
              "b_whole/a": (("b_extract_fp32", "a_reference_fp32"), lambda: whole("b_extract_fp32", "a_reference_fp32")),
              "d_whole/a_bf16": (("d_extract_bf16", "a_reference_bf16"), lambda: whole("d_extract_bf16", "a_reference_bf16")),
              "e/a_64_bf16": (("e_extract_64_bf16", "e_reference_64_bf16"),
                              lambda: rate("e_extract_64_bf16") / rate("e_reference_64_bf16")),
              "f_per_core/pillow": (("f_zero_cost_64", "f_pillow_64"), lambda: per_core("f_zero_cost_64", "f_pillow_64")),
              "f256_per_core/pillow": (("f_zero_cost_64_256", loop_256), lambda: per_core("f_zero_cost_64_256", loop_256)),
              "b/c": (("b_extract_fp32", "c_tutorial"), lambda: rate("b_extract_fp32") / rate("c_tutorial")),
              "d/b": (("d_extract_bf16", "b_extract_fp32"), lambda: rate("d_extract_bf16") / rate("b_extract_fp32")),
              "rss_8000/1000_driver": (("memory_8000", "memory_1000"), lambda: peak("peak_rss", False)),
              "rss_8000/1000_actor": (("memory_8000", "memory_1000"), lambda: peak("actor_peak_rss", True)),
              "uss_8000/1000_actor": (("memory_8000", "memory_1000"), lambda: peak("actor_peak_uss", True))}
    if "actor_peak_own" in r.get("memory_8000", {}):
        wanted["own_8000/1000_actor"] = (("memory_8000", "memory_1000"), lambda: peak("actor_peak_own", True))
    return {name: ratio() for name, (needs, ratio) in wanted.items() if all(k in r for k in needs)}


def table(r: dict, full: bool = True) -> str:
    gib = 1024**3
    machine = r["machine"]
    lines = [f"machine: {machine['cpus']} CPUs, {machine['cpu']}, {machine.get('memory_gib', '?')} GiB; Python {machine['python']}, "
             f"{machine.get('versions', '')}", "",
             f"{'measurement':<48}{'images/s':>10}{'whole s':>9}{'peak RSS driver':>17}{'peak RSS actor':>16}"]
    for key, name in [("a_reference_fp32", "(a) reference: VGG16 tf.function, fp32"),
                      ("a_reference_bf16", "(a') reference: VGG16 tf.function, bf16"),
                      ("b_extract_fp32", "(b) catdog extract, fp32, steady"), ("c_tutorial", "(c) tutorial loop, batch 20"),
                      ("d_extract_bf16", "(d) catdog extract, bf16, steady"),
                      ("e_reference_64_bf16", f"(e') reference, bf16, {SMALL} px"),
                      ("e_extract_64_bf16", f"(e) catdog extract, bf16, {SMALL} px, steady"),
                      ("f_zero_cost_64", f"(f) catdog, zero-cost model, {SMALL} px, steady"),
                      ("f_zero_cost_64_1024", "(f) the same, --shard-size 1024"),  # runs saved before 1024 was the default
                      ("f_zero_cost_64_256", "(f) the same, --shard-size 256"),
                      ("f_pillow_64", f"(f') plain Pillow loop, one core, {SMALL} px"),
                      ("f_pillow_64_256", "(f') the same loop, around the 256 runs")]:
        m = r.get(key)
        if m is None:
            continue
        actor = f"{max(m['actor_peak_rss']) / gib:.2f} GiB" if "actor_peak_rss" in m else "-"
        whole = f"{m['process_seconds']:.0f}" if "actor_peak_rss" in m else "-"
        driver = f"{m['peak_rss'] / gib:.2f} GiB" if "peak_rss" in m else "-"
        samples = f"  (runs: {', '.join(f'{x:.1f}' for x in m['samples'])})" if "samples" in m else ""
        lines.append(f"{name:<48}{m['images_per_second']:>10.1f}{whole:>9}{driver:>17}{actor:>16}{samples}")
    q = r["ratios"]
    lines.append("")
    if "b/a" in q:
        lines += [f"steady vs reference: fp32 b/a = {q['b/a']:.2f}, bf16 d/a' = {q['d/a_bf16']:.2f}",
                  f"whole command vs the reference's time for the same {r['b_extract_fp32']['images']:,} photos: "
                  f"fp32 {q['b_whole/a']:.2f}, bf16 {q['d_whole/a_bf16']:.2f}"]
    if "e/a_64_bf16" in q:
        lines.append(f"fast model ({SMALL} px, bf16, {r['e_extract_64_bf16']['images']:,} photos): steady e/e' = {q['e/a_64_bf16']:.2f}")
    for label, extract, reference in (("b", "b_extract_fp32", "a_reference_fp32"), ("d", "d_extract_bf16", "a_reference_bf16"),
                                      ("e", "e_extract_64_bf16", "e_reference_64_bf16")):
        lines += _run_lines(label, r.get(extract), r.get(reference))
    if "f_per_core/pillow" in q:
        lines += _ceiling_lines(r)
    if "b/a" in q:
        lines.append(f"b/c = {q['b/c']:.2f}   d/b = {q['d/b']:.2f}")
    if "memory_8000" in r and full:
        lines += _other_lines(r, q)
    return "\n".join(lines)


def _other_lines(r: dict, q: dict) -> list[str]:
    gib = 1024**3
    lines = [f"bf16 vs fp32 feature cosine: mean {r['bf16_cosine']['mean']:.5f}, min {r['bf16_cosine']['min']:.5f}",
             f"peak memory 8,000 vs 1,000 images: driver RSS x{q['rss_8000/1000_driver']:.2f}, actor RSS "
             f"x{q['rss_8000/1000_actor']:.2f} (object-store pages it read included), actor USS x{q['uss_8000/1000_actor']:.2f}"
             + (f", actor USS without object-store pages x{q['own_8000/1000_actor']:.2f}" if "own_8000/1000_actor" in q else ""),
             *_timeline_lines(r["b_extract_fp32"]),
             "", f"{'codec':<8}{'bytes/image':>12}{'write MB/s':>12}{'read MB/s':>11}"]
    for codec in ("none", "snappy", "lz4", "zstd"):
        c = r["parquet"][codec]
        lines.append(f"{codec:<8}{c['bytes_per_image']:>12.0f}{c['write_mb_s']:>12.0f}{c['read_mb_s']:>11.0f}")
    lines += ["", f"{'images':<14}{'driver peak RSS':>17}{'actor peak RSS':>16}{'actor peak USS':>16}{'  without store':>16}"]
    for key in ("memory_1000", "memory_8000"):
        m = r[key]
        own = f"{max(m['actor_peak_own']) / gib:>12.2f} GiB" if "actor_peak_own" in m else ""
        lines.append(f"{m['images']:<14,}{m['peak_rss'] / gib:>13.2f} GiB{max(m['actor_peak_rss']) / gib:>12.2f} GiB"
                     f"{max(m['actor_peak_uss']) / gib:>12.2f} GiB{own}")
    return lines + ["", f"decode + resize to 150x150: {r['decode']['ms_per_image']:.2f} ms of CPU per photo "
                    f"(Pillow, one core, {r['decode']['images']} photos)",
                    *_shard_decode_line(r["decode"]),
                    f"catdog.store.features.load: {r['parquet']['load_mb_s']:.0f} MB/s",
                    *_draft_lines(r.get("jpeg_draft")),
                    f"VGG16 conv base at 150x150: {r['flops_per_image'] / 1e9:.2f} GFLOP per image"]


def _run_lines(label: str, extract: dict | None, reference: dict | None) -> list[str]:
    """Run by run, for runs saved with their shards: each catdog run's rate, the CPU the hypervisor
    stole from the machine meanwhile, and its widest gap between two shards against the median gap."""
    runs = (extract or {}).get("runs", [])
    if not runs or "arrivals" not in runs[0]:
        return []

    def described(run: dict) -> str:
        gaps = np.diff([t for t, _ in run["arrivals"]])
        widest = f", widest shard gap {gaps.max() / np.median(gaps):.2f} x the median" if len(gaps) else ""
        return f"{run['images_per_second']:.1f} (steal {run['machine_cpu']['steal']:.1%}{widest})"

    steal = ", ".join(f"{x['machine_cpu']['steal']:.1%}" for x in reference.get("runs", []) if "machine_cpu" in x)
    return [f"({label}) run by run: " + "; ".join(described(run) for run in runs) + f"; steal during its references: {steal}"]


def _ceiling_lines(r: dict) -> list[str]:
    f, q = r["f_zero_cost_64"], r["ratios"]
    if "f256_per_core/pillow" in q:
        sizes = f"{q['f_per_core/pillow']:.2f} x the plain loop (shards of {f['shard_size']}, the GPU default), " \
                f"{q['f256_per_core/pillow']:.2f} x (shards of 256)"
    else:  # runs saved before: 256 was the default, 1024 measured beside it, on 8,000 photos
        sizes = f"{q['f_per_core/pillow']:.2f} x the plain loop (shards of 256), {q['f1024_per_core/pillow']:.2f} x (shards of 1024)"
    return [f"pipeline ceiling (zero-cost model, one fake GPU, {f['images']:,} photos, decode sharing all {f['cpus']} cores): "
            f"per core {sizes}"]


def _timeline_lines(m: dict) -> list[str]:
    marks = m.get("timeline")
    if not marks:
        return [f"start-up (Ray, weights) before the pipeline: {m['startup_seconds']:.1f} s"]
    from catdog.extraction.extract import TIMELINE

    return ["timeline of (b), s from the process start: " + ", ".join(f"{TIMELINE[k]} {v:.1f}" for k, v in marks.items())
            + f", exit {m.get('first_process_seconds', m['process_seconds']):.1f}"]


def _shard_decode_line(d: dict) -> list[str]:
    if "shard_ms_threads" not in d:  # runs saved before it was measured
        return []
    return [f"a 256-photo shard at 64 px in an actor: decoded in {d['shard_ms_one_thread']:.0f} ms on one thread, "
            f"{d['shard_ms_threads']:.0f} ms on {d['threads']} (x{d['shard_ms_one_thread'] / d['shard_ms_threads']:.2f})"]


def _draft_lines(d: dict | None) -> list[str]:
    if not d:
        return []
    return ["", f"JPEG draft mode ({d['images']} photos)  {'full ms':>8}{'draft ms':>9}{'speed-up':>9}{'cosine mean':>12}{'min':>8}",
            *[f"{'':<4}{size} px{'':<25}{d[f'{size}_full_ms']:>8.2f}{d[f'{size}_draft_ms']:>9.2f}"
              f"{d[f'{size}_full_ms'] / d[f'{size}_draft_ms']:>8.2f}x{d[f'{size}_cosine_mean']:>12.5f}{d[f'{size}_cosine_min']:>8.4f}"
              for size in (150, 64)]]


def machine() -> dict:
    import importlib.metadata as md

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    versions = ", ".join(f"{p} {md.version(p)}" for p in ("tensorflow", "keras", "ray", "pyarrow", "pillow"))
    from catdog.vision.convbase import cpu

    _, flags = cpu()  # the flags --precision auto reads
    extras = [f for f in ("avx512_bf16", "amx_bf16", "avx512f", "avx2") if f in flags]
    return {"cpus": os.cpu_count(), "cpu": f"{_cpu_name()} ({', '.join(extras) or 'no AVX-512'})", "date": time.strftime("%Y-%m-%d"),
            "memory_gib": round(memory, 1), "python": sys.version.split()[0], "versions": versions}


def _cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


if __name__ == "__main__":
    main()
