"""`catdog status OUT [ROOT]`: what OUT holds and how it was made, and given ROOT, what a re-run
of `catdog extract` would do, without running it (nothing is written, Ray is not started)."""

from __future__ import annotations

from catdog import imagefolder, index, manifest, storage
from catdog.errors import CatdogError


def status(out: str, root: str | None = None) -> list[str]:
    location = storage.resolve(out)
    recorded = manifest.read(location)
    if recorded is None:
        raise CatdogError(f"{out} holds no catdog output (no {manifest.MANIFEST})")
    meta, totals = recorded.get("features", {}), recorded.get("totals", {})
    weights = meta.get("weights", {})
    lines = [
        f"output      {out}",
        f"input       {recorded.get('config', {}).get('root', '?')}",
        f"settings    {meta.get('input_size', ['?'])[0]} px, preprocess {meta.get('preprocess')}, "
        f"{meta.get('precision')} -> {meta.get('dtype')}, weights {weights.get('source')}"
        + (f" (sha256 {weights['sha256'][:12]})" if weights.get("sha256") else ""),
        f"classes     {', '.join(meta.get('classes', [])) or 'none'}",
        f"rows        {totals.get('images', '?')} images, {totals.get('errors', '?')} errors, {totals.get('shards', '?')} files",
        f"last run    {_state(recorded)}, {recorded.get('updated', '?')}, generation {recorded.get('generation', 1)}"
        + (f" ({recorded['last_changes']})" if recorded.get("last_changes") else ""),
    ]
    if root is not None:
        lines.append(f"a re-run    {_rerun(location, root)}")
    return lines


def _state(recorded: dict) -> str:
    if recorded.get("committing"):
        return f"interrupted while committing generation {recorded['committing']['generation']} (the next run finishes it)"
    return "complete" if recorded.get("status") == "complete" else "interrupted (a re-run resumes it)"


def _rerun(out: storage.Location, root: str) -> str:
    previous = index.read(out)
    if previous is None:
        return "continues the first run (no index yet)"
    changes = index.compare(previous, imagefolder.scan(root))
    work = len(changes.pending)
    return f"would read {work:,} images: {changes}" if work or changes.removed else f"has nothing to do: {changes}"
