"""Real credit datasets shipped inside installable packages (see :mod:`datasets.loaders`)."""

from datasets.loaders import DATASETS, MISSING_DATASETS, DatasetCard, load, month_counts

__all__ = ["DATASETS", "MISSING_DATASETS", "DatasetCard", "load", "month_counts"]
