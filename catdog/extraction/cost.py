"""What an extraction costs: the time of each stage, the stage that bounds the run, and the CPU- and
GPU-seconds per 1,000 images of the cluster it held — measured after a run, projected before one
(`catdog extract --estimate`).

The parallel stages (decode, embed, write) run one lane per embedding actor; a stage's busy share is
its summed time over shards divided by (actors × the pipeline's wall time from the first model
loaded to the last shard), so 100 % means every actor's lane of that stage was busy all along: that
stage is the bound. The stages before and after (listing, start-up, commit) run alone; their share
is of the command's wall time. A small job is bound by its start-up. The cost is the cluster's
CPUs (and the actors' GPUs) times wall time: what a job that fills its cluster is billed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

PARALLEL = ("decode", "embed", "write")
SERIAL = ("listing", "start-up", "commit")  # start-up: Ray, the weights, the plan, the first actor's model


@dataclass(frozen=True)
class Cost:
    stages: dict[str, float]  # seconds: listing and commit on the driver; decode, embed, write summed over shards
    pipeline_seconds: float  # wall time from the first model loaded to the last shard written
    wall_seconds: float  # the whole command
    images: int  # images (good or bad) the pipeline handled
    actors: int
    cpus: float  # the cluster's, held by the job
    gpus: float  # the embedding actors'
    steady_images_per_second: float = 0.0  # 0: too few shards for a steady rate

    def busy(self) -> dict[str, float]:
        """Each stage's busy share (0..1), as the module docstring defines it."""
        shares = {s: self.stages.get(s, 0.0) / (self.actors * self.pipeline_seconds)
                  for s in PARALLEL if self.actors and self.pipeline_seconds > 0}
        shares.update({s: self.stages.get(s, 0.0) / self.wall_seconds for s in SERIAL if self.wall_seconds > 0})
        return shares

    @property
    def bottleneck(self) -> str:
        busy = self.busy()
        return max(busy, key=busy.get) if busy else ""

    def per_thousand(self, devices: float) -> float:
        """Device-seconds per 1,000 images at the steady rate (else the pipeline's average)."""
        rate = self.steady_images_per_second or (self.images / self.pipeline_seconds if self.pipeline_seconds > 0 else 0)
        return devices * 1000 / rate if rate > 0 else 0.0

    def lines(self) -> list[str]:
        if not self.images:
            return []
        busy = self.busy()
        stages = ", ".join(f"{s} {self.stages[s]:.1f} s" for s in (*SERIAL[:2], *PARALLEL, *SERIAL[2:]) if s in self.stages)
        bound = self.bottleneck
        where = "on each actor" if bound in PARALLEL else "of the wall time"
        gpu = f", {self.per_thousand(self.gpus):.1f} GPU-s" if self.gpus else ""
        return [f"stages      {stages}; bound by {bound} (busy {busy[bound]:.0%} {where})",
                f"cost        {self.per_thousand(self.cpus):.1f} CPU-s{gpu} per 1,000 images "
                f"({self.cpus:g} CPUs{f', {self.gpus:g} GPUs' if self.gpus else ''})"]

    def record(self) -> dict:
        """For manifest.json."""
        return {**asdict(self), "bottleneck": self.bottleneck, "busy": {k: round(v, 3) for k, v in self.busy().items()},
                "cpu_seconds_per_1000": round(self.per_thousand(self.cpus), 2),
                "gpu_seconds_per_1000": round(self.per_thousand(self.gpus), 2)}


@dataclass(frozen=True)
class Estimate:
    """A whole extraction projected from a sample of its shards (`catdog extract --estimate`)."""

    images: int  # in the whole input
    sample: Cost  # what the sample cost, measured
    sample_shards: int

    @property
    def rate(self) -> float:
        """Images per second once started, from the sample (its steady rate, else its average)."""
        s = self.sample
        return s.steady_images_per_second or (s.images / s.pipeline_seconds if s.pipeline_seconds > 0 else 0.0)

    @property
    def wall_seconds(self) -> float:
        """Listing and start-up as the sample had them, then every image at the sample's rate."""
        fixed = self.sample.stages.get("listing", 0.0) + self.sample.stages.get("start-up", 0.0)
        return fixed + (self.images / self.rate if self.rate > 0 else float("inf"))

    def hours(self, devices: float) -> float:
        return devices * self.wall_seconds / 3600

    def lines(self) -> list[str]:
        s = self.sample
        gpu = f", {self.hours(s.gpus):,.2f} GPU-hours" if s.gpus else ""
        return [f"sample      {s.images:,} images in {self.sample_shards} shards, {self.rate:.1f} images/s once started "
                f"(nothing written to OUT)",
                *s.lines()[:1],
                f"projected   {self.images:,} images in {_duration(self.wall_seconds)} on this cluster: "
                f"{self.hours(s.cpus):,.2f} CPU-hours{gpu} ({s.cpus:g} CPUs{f', {s.gpus:g} GPUs' if s.gpus else ''})"]


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "(no rate measured)"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
