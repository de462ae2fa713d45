"""`catdog search OUT IMAGE_OR_DIR...`: the stored images nearest to new photos. The photos' features
are made exactly as OUT's were (the network, weights, decoding and preprocessing its manifest
records), and compared by cosine with every stored vector (faiss' exact search)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from catdog import storage
from catdog.config import ExtractConfig, ImageSettings, SearchConfig
from catdog.errors import CatdogError
from catdog.extraction import imagefolder
from catdog.insight import neighbours
from catdog.store import features, manifest
from catdog.vision import convbase
from catdog.vision.images import decode_files


@dataclass(frozen=True)
class Match:
    query: str
    rank: int  # 1: the nearest
    path: str  # the stored image, relative to OUT's ROOT
    cosine: float


@dataclass(frozen=True)
class SearchResult:
    matches: list[Match]
    unreadable: list[tuple[str, str]]  # (photo, why)
    out: str | None = None

    def lines(self) -> list[str]:
        if self.out:
            return [f"{len(self.matches):,} matches written to {self.out}"] + [f"unreadable  {q}: {why}" for q, why in self.unreadable]
        return [f"{m.query}\t{m.rank}\t{m.path}\t{m.cosine:.4f}" for m in self.matches] + [
            f"unreadable  {q}: {why}" for q, why in self.unreadable]


def run(config: SearchConfig) -> SearchResult:
    out = storage.resolve(config.features)
    recorded = manifest.read(out)
    if recorded is None:
        raise CatdogError(f"{out} holds no catdog output (no manifest.json): run `catdog extract` first")
    manifest.require_complete(out)
    files, folders = imagefolder.inputs(list(config.images))
    files += imagefolder.files_in(folders)
    stored = features.load(out)
    meta = recorded.features
    extraction = ExtractConfig(root="", out="", **ImageSettings.from_metadata(meta, recorded.config, config.weights),
                               dtype=meta["dtype"], precision=meta["precision"], progress=False)
    weights = convbase.resolve_weights(extraction.weights, extraction.seed, extraction.image_size, extraction.backbone,
                                       extraction.pooling, extraction.weights_mirror)
    if not convbase.same_weights(weights.identity, meta["weights"]):
        raise CatdogError(f"weights {extraction.weights} are not the ones {out} was made with "
                          f"({weights.identity} vs {meta['weights']}); pass --weights with that file")
    decoded = decode_files(files, extraction.decode)
    unreadable = [(storage.display_path(str(files[e.index])), f"{e.error}: {e.message}") for e in decoded.errors]
    matches: list[Match] = []
    if decoded.ok:
        base = convbase.ConvBase(weights, extraction.embed)
        # Rounded as the stored features were, then compared as `similar` compares them.
        queries = base.embed(decoded.pixels).astype(extraction.dtype).astype(np.float32)
        indices, similarity = neighbours.exact(neighbours.unit(queries), neighbours.unit(stored.X), config.top)
        for q, row, sims in zip(decoded.ok, indices, similarity):
            name = storage.display_path(str(files[q]))
            matches += [Match(name, rank, str(stored.paths[j]), round(float(c), 6))
                        for rank, (j, c) in enumerate(zip(row, sims), 1) if j >= 0]
    if config.out:
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(["query", "rank", "path", "cosine"])
        writer.writerows((m.query, m.rank, m.path, f"{m.cosine:.6f}") for m in matches)
        storage.resolve(config.out).write_bytes(text.getvalue().encode())
    return SearchResult(matches, unreadable, config.out)
