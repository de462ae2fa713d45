"""What an extraction reads: the images under ROOT, or the rows of the image table ROOT names."""

from __future__ import annotations

from catdog.config import ExtractConfig
from catdog.extraction import imagefolder, table
from catdog.extraction.imagefolder import ImageSet


def images(config: ExtractConfig) -> ImageSet:
    if config.from_table:
        return table.read(config.root, config.path_column, config.label_column, config.split_column)
    return imagefolder.scan(config.root)


def recorded_config(settings: dict) -> ExtractConfig:
    """The ExtractConfig a manifest recorded (settings of other catdog versions left out)."""
    return ExtractConfig(**{k: v for k, v in settings.items() if k in ExtractConfig.__dataclass_fields__})
