"""catdog: VGG16 conv-base features for image folders, extracted on Ray and stored as Parquet."""

__version__ = "0.1.0"
