from .batch_hard import BatchHardScores, batch_hard_scores
from .occlusion_loss import OcclusionLoss
from .pairwise_matching_loss import PairwiseMatchingLoss
from .softmax_triplet_loss import SoftmaxTripletLoss
from .weighted_loss import ScoreMatrixLoss, WeightedLoss

__all__ = [
    'WeightedLoss', 'ScoreMatrixLoss', 'PairwiseMatchingLoss', 'SoftmaxTripletLoss',
    'OcclusionLoss', 'BatchHardScores', 'batch_hard_scores'
]
