"""Activation sources: what the dictionaries are trained on.

Every source yields ``batch(step) -> [batch_size, d]`` float32 tensors addressed by step, so a
resumed training run sees the same batches. Imports the core only.

    from sae_core.sources import SyntheticSource, SyntheticConfig, LMSourceConfig, lm_source
"""

from sae_core.sources.lm_source import LMSourceConfig, iter_documents, lm_source
from sae_core.sources.store import ActivationStore, StoreSource
from sae_core.sources.synthetic import SyntheticConfig, SyntheticSource

__all__ = ["ActivationStore", "LMSourceConfig", "StoreSource", "SyntheticConfig", "SyntheticSource",
           "iter_documents", "lm_source"]
