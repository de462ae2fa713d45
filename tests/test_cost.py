"""What a run cost: busy shares, the bound and device-seconds per 1,000 images, against sums done here."""

import pytest

from catdog.extraction.cost import Cost


def cost(**changes) -> Cost:
    settings = dict(stages={"listing": 2.0, "start-up": 10.0, "decode": 30.0, "embed": 160.0, "write": 8.0, "commit": 1.0},
                    pipeline_seconds=100.0, wall_seconds=115.0, images=4000, actors=2, cpus=8.0, gpus=0.0,
                    steady_images_per_second=50.0)
    return Cost(**{**settings, **changes})


def test_busy_shares_and_the_bound():
    c = cost()
    busy = c.busy()
    assert busy["embed"] == pytest.approx(160 / (2 * 100)) and busy["decode"] == pytest.approx(30 / 200)
    assert busy["write"] == pytest.approx(8 / 200) and busy["start-up"] == pytest.approx(10 / 115)
    assert c.bottleneck == "embed"
    small = cost(stages={**c.stages, "start-up": 95.0, "embed": 10.0}, wall_seconds=110.0)
    assert small.bottleneck == "start-up"  # a small job waits on its start-up


def test_device_seconds_per_thousand_images_at_the_steady_rate():
    c = cost(gpus=2.0)
    assert c.per_thousand(c.cpus) == pytest.approx(8 * 1000 / 50)  # 160 CPU-s
    assert c.per_thousand(c.gpus) == pytest.approx(2 * 1000 / 50)
    unsteady = cost(steady_images_per_second=0.0)
    assert unsteady.per_thousand(8.0) == pytest.approx(8 * 1000 / (4000 / 100))  # the pipeline's average instead


def test_lines_and_record():
    c = cost(gpus=2.0)
    stages, spent = c.lines()
    assert stages == ("stages      listing 2.0 s, start-up 10.0 s, decode 30.0 s, embed 160.0 s, write 8.0 s, "
                      "commit 1.0 s; bound by embed (busy 80% on each actor)")
    assert spent == "cost        160.0 CPU-s, 40.0 GPU-s per 1,000 images (8 CPUs, 2 GPUs)"
    record = c.record()
    assert record["bottleneck"] == "embed" and record["cpu_seconds_per_1000"] == 160.0 and record["busy"]["embed"] == 0.8
    assert cost(images=0).lines() == []
