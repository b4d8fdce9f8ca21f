from .fusion import choose_fusion_weight, fused_scores, standardise
from .identification import (SearchOutcome, TpirAtFpir, cmc_rates, concatenate_outcomes,
                             search_outcome, shortlist_recall, tpir_at_fpir)
from .occlusion_quality import mean_visibility, visibility_iou, visibility_mse, visibility_summary
from .verification import (L2_THRESHOLDS, TarAtFar, allowed_false_accepts, contiguous_folds,
                           equal_error_rate, roc_auc, roc_curve, tar_at_far, threshold_at_rate,
                           verification_accuracy, verification_accuracy_l2)

__all__ = [
    'L2_THRESHOLDS', 'TarAtFar', 'allowed_false_accepts', 'contiguous_folds', 'equal_error_rate',
    'roc_auc', 'roc_curve', 'tar_at_far', 'threshold_at_rate', 'verification_accuracy',
    'verification_accuracy_l2', 'visibility_mse', 'visibility_iou', 'mean_visibility',
    'visibility_summary',
    'SearchOutcome', 'TpirAtFpir', 'search_outcome', 'concatenate_outcomes', 'cmc_rates',
    'tpir_at_fpir', 'shortlist_recall', 'standardise', 'fused_scores',
    'choose_fusion_weight'
]
