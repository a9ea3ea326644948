"""Fairness for pruning: constraints (differentiable surrogates), metrics, the audit."""

from tf_fairprune.fairness.audit import dense_correctness
from tf_fairprune.fairness.audit import evaluate_fairness
from tf_fairprune.fairness.audit import fairness_report
from tf_fairprune.fairness.audit import FairnessReport
from tf_fairprune.fairness.constraints import DegradationFairness
from tf_fairprune.fairness.constraints import DemographicParity
from tf_fairprune.fairness.constraints import EqualizedOdds
from tf_fairprune.fairness.constraints import EqualOpportunity
from tf_fairprune.fairness.constraints import ExcessDegradation
from tf_fairprune.fairness.constraints import FairnessConstraint
from tf_fairprune.fairness.constraints import MaxGroupLoss
from tf_fairprune.fairness.constraints import PerformanceFairness
from tf_fairprune.fairness.enforcement import Lagrangian
from tf_fairprune.fairness.group_verdicts import GroupVerdict
from tf_fairprune.fairness.enforcement import Penalty
from tf_fairprune.fairness.held_out import HeldOutFairness

__all__ = [
    "DegradationFairness", "DemographicParity", "EqualOpportunity", "EqualizedOdds",
    "ExcessDegradation",
    "FairnessConstraint", "FairnessReport", "GroupVerdict", "HeldOutFairness", "Lagrangian", "MaxGroupLoss",
    "Penalty",
    "PerformanceFairness", "dense_correctness",
    "evaluate_fairness", "fairness_report",
]
