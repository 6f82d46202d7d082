"""Character-level Transformer language models trained with BP, DFA or optical DFA (device in the loop).

See docs/transformer.md. ``opu train --model transformer --dataset pystdlib --mode optical-dfa``.
"""

from .corpus import Corpus, CorpusError, load_corpus, unigram_bpc
from .flops import training_flops_per_token
from .model import TransformerConfig
from .train import MODES, LMConfig, LMResult, LMTrainingError, LMTrainingInterrupted, read_metrics, train_lm

__all__ = [
    "MODES",
    "Corpus",
    "CorpusError",
    "LMConfig",
    "LMResult",
    "LMTrainingError",
    "LMTrainingInterrupted",
    "TransformerConfig",
    "load_corpus",
    "read_metrics",
    "train_lm",
    "training_flops_per_token",
    "unigram_bpc",
]
