"""Evaluation metrics: exact retrieval (top-k, Hit@K, MRR, recall@K, contrastive accuracy),
reconstruction (token and sequence cosine), regression (MSE, RMSE, MAE, R^2), latent
usage (active dimensions, participation ratio, PCA spectrum) and generated code (exact
match, token accuracy, edit similarity).

Every function accepts NumPy arrays or ``seqlab.Tensor`` and raises ``ValueError``
naming the argument and the shapes for bad input.
"""

from .code import (
    edit_similarity,
    exact_match,
    levenshtein,
    paired_exact_match,
    share,
    sign_test,
    token_accuracy,
)
from .latent import bottleneck_utilization, pca_explained_variance
from .reconstruction import sequence_cosine, token_cosine
from .regression import mae, mse, r2, rmse
from .retrieval import (
    contrastive_accuracy,
    hit_at_k,
    mrr,
    pairwise_cosine,
    recall_at_k,
    target_rank,
    topk,
)

__all__ = [
    "bottleneck_utilization",
    "contrastive_accuracy",
    "edit_similarity",
    "exact_match",
    "hit_at_k",
    "levenshtein",
    "mae",
    "mrr",
    "mse",
    "paired_exact_match",
    "pairwise_cosine",
    "pca_explained_variance",
    "r2",
    "recall_at_k",
    "rmse",
    "sequence_cosine",
    "share",
    "sign_test",
    "target_rank",
    "token_accuracy",
    "token_cosine",
    "topk",
]
