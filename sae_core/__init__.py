"""sae_core: sparse autoencoders and dictionary-similarity statistics for the MCS report.

Three layers, each a folder; imports point one way only (report -> sources -> core):

- the core, this package's top level: the SAE and its file format, the family training loop,
  max cosine similarity and matching, the analytic null, statistics;
- ``sae_core.sources``: activations to train on (synthetic ground truth, language models read
  through nnsight, the on-disk activation store, the replication GPT);
- ``sae_core.report``: the cached pipeline, chapter analyses, plots and the book build.

    from sae_core import SparseAutoencoder, train_family, max_cosine_similarity
"""

__version__ = "0.2.0"

from sae_core import nulls, stats
from sae_core.device import resolve_device
from sae_core.formats import detect_format, load_dictionary, save_dictionary
from sae_core.sae import SAEConfig, SparseAutoencoder, load_family
from sae_core.similarity import (
    MCSResult,
    gaussian_dictionary,
    max_cosine_similarity,
    one_to_one_mcs,
    reverse_mcs,
    sampled_null_mcs,
    self_mcs,
)
from sae_core.train import TensorSource, TrainConfig, train_family

__all__ = [
    "MCSResult",
    "SAEConfig",
    "SparseAutoencoder",
    "TensorSource",
    "TrainConfig",
    "__version__",
    "detect_format",
    "gaussian_dictionary",
    "load_dictionary",
    "load_family",
    "max_cosine_similarity",
    "nulls",
    "one_to_one_mcs",
    "resolve_device",
    "reverse_mcs",
    "sampled_null_mcs",
    "save_dictionary",
    "self_mcs",
    "stats",
    "train_family",
]
