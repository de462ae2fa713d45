"""catdog: conv-base features for large photo collections, extracted on Ray and stored as Parquet;
classifiers, explanations and data checks on them. The Python API is `catdog.api`'s functions."""

from catdog.api import (  # noqa: E402
           audit,
           estimate,
           explain,
           extract,
           fit_e2e,
           fit_head,
           load,
           load_model,
           predict,
           read_predictions,
           report,
           search,
           similar,
           status,
           stream,
)
from catdog.errors import CatdogError  # noqa: E402
from catdog.version import __version__  # noqa: E402

__all__ = ["CatdogError", "__version__", "audit", "estimate", "explain", "extract", "fit_e2e", "fit_head", "load", "load_model", "predict", "read_predictions", "report", "search", "similar", "status",
           "stream"]
