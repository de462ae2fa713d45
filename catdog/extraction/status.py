"""`catdog status OUT [ROOT]`: what OUT holds and how it was made, and given ROOT, what a re-run
of `catdog extract` would do, without running it (nothing is written, Ray is not started)."""

from __future__ import annotations

from dataclasses import dataclass

from catdog import storage
from catdog.errors import CatdogError
from catdog.extraction import listing
from catdog.store import index, layout, manifest
from catdog.store import verify as checks
from catdog.store.index import Changes
from catdog.store.manifest import Manifest
from catdog.store.verify import Damage
from catdog.vision import backbones


@dataclass(frozen=True)
class Status:
    out: str
    manifest: Manifest  # everything OUT records of itself
    state: str  # "complete", or what an interrupted run left and what the next one does about it
    rerun: Changes | None = None  # given ROOT: what a re-run would find
    first_run_unfinished: bool = False  # given ROOT: no index yet, a re-run continues the first run
    damage: Damage | None = None  # with verify: the files read whole, those damaged or missing

    @property
    def intact(self) -> bool:
        """Nothing found damaged (or nothing verified)."""
        return self.damage is None or not self.damage.found

    @property
    def images(self) -> int | None:
        return self.manifest.totals.get("images")

    @property
    def errors(self) -> int | None:
        return self.manifest.totals.get("errors")

    def lines(self) -> list[str]:
        m, meta = self.manifest, self.manifest.features
        weights, totals = meta.get("weights", {}), m.totals
        lines = [
            f"output      {self.out}",
            f"input       {m.config.get('root', '?')}",
            f"features    {meta.get('backbone', backbones.UNRECORDED['backbone'])}, "
            f"{meta.get('pooling', backbones.UNRECORDED['pooling'])}: {meta.get('feature_dim', '?')} values per image",
            f"settings    {meta.get('input_size', ['?'])[0]} px, preprocess {meta.get('preprocess')}, "
            f"{meta.get('precision')} -> {meta.get('dtype')}, weights {weights.get('source')}"
            + (f" (sha256 {weights['sha256'][:12]})" if weights.get("sha256") else ""),
            f"classes     {', '.join(meta.get('classes', [])) or 'none'}",
            *([f"predictions {meta['predictions'].get('kind')} model's answers (sha256 {meta['predictions'].get('sha256', '')[:12]}), "
               f"classes {', '.join(meta['predictions'].get('classes', []))}"] if meta.get("predictions") else []),
            f"rows        {totals.get('images', '?')} images, {totals.get('errors', '?')} errors, {totals.get('shards', '?')} files",
            f"last run    {self.state}, {m.updated or '?'}, generation {m.generation}"
            + (f" ({m.last_changes})" if m.last_changes else ""),
        ]
        if self.damage is not None:
            d = self.damage
            lines.append(f"verified    {d.files:,} files read whole: " + ("all intact" if not d.found else
                         f"{len(d.damaged):,} damaged, {len(d.missing):,} missing"))
            lines += [f"damaged     {f}" for f in d.damaged] + [f"missing     {f}" for f in d.missing]
            if d.found:
                lines.append(f"repair      `catdog extract ROOT --out {self.out} --repair` extracts their images again")
        if self.first_run_unfinished:
            lines.append("a re-run    continues the first run (no index yet)")
        elif self.rerun is not None:
            work = self.rerun.pending
            if work or self.rerun.removed:
                lines.append(f"a re-run    would read {work:,} images{' or tars' if self.rerun.new_tars else ''}: {self.rerun}")
            elif self.intact:
                lines.append(f"a re-run    has nothing to do: {self.rerun}")
            else:  # a plain re-run reads only what changed: the damage stays until --repair
                lines.append("a re-run    finds nothing changed in ROOT, and leaves the damage: use --repair")
        return lines


def status(out: str, root: str | None = None, verify: bool = False) -> Status:
    """What `out` holds; given `root`, what a re-run would do; with `verify`, every committed file
    read whole (on a store: every byte downloaded) and the damaged or missing ones named."""
    location = storage.resolve(out)
    recorded = manifest.read(location)
    if recorded is None:
        raise CatdogError(f"{out} holds no catdog output (no {layout.MANIFEST})")
    rerun, unfinished = None, False
    if root is not None:
        made_from = recorded.compat.get("root")
        if made_from and storage.resolve(root).path != made_from:
            raise CatdogError(f"{out} was made from {made_from}, not {root}: `catdog extract` would refuse to "
                              "add it (use another --out for another folder)")
        if not index.exists(location):
            unfinished = True
        else:
            source = listing.open_source(listing.recorded_config({**recorded.config, "root": root}))
            comparison = index.Comparison(index.rows(location))
            for _ in comparison.pending(source.entries()):
                pass
            rerun = comparison.changes
    damage = checks.verify(location)[0] if verify else None
    return Status(out, recorded, _state(recorded), rerun, unfinished, damage)


def _state(recorded: Manifest) -> str:
    if recorded.committing:
        return f"interrupted while committing generation {recorded.committing['generation']} (the next run finishes it)"
    return "complete" if recorded.status == "complete" else "interrupted (a re-run resumes it)"
