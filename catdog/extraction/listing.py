"""What an extraction reads: the images under ROOT (listed as they are needed), or the rows of the
image table ROOT names."""

from __future__ import annotations

from catdog.config import ExtractConfig
from catdog.extraction import imagefolder, table
from catdog.extraction.imagefolder import Source


def open_source(config: ExtractConfig) -> Source:
    if config.from_table:
        return table.read(config.root, config.path_column, config.label_column, config.split_column)
    return imagefolder.open_folder(config.root, config.class_names)


def recorded_config(settings: dict) -> ExtractConfig:
    """The ExtractConfig a manifest recorded (settings of other catdog versions left out)."""
    return ExtractConfig(**{k: v for k, v in settings.items() if k in ExtractConfig.__dataclass_fields__})
