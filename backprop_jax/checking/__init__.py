"""Checking hand rules: the hand rule against autodiff of the same forward and central differences.

``gradcheck`` compares the three; ``without_hand_rules`` gives the autodiff
side. Both, and ``backprop_jax.graph``, read traced functions through one
jaxpr walker (``_jaxpr``).
"""

from backprop_jax.checking._autodiff import hand_rules, without_hand_rules
from backprop_jax.checking._gradcheck import assert_gradcheck, gradcheck
from backprop_jax.checking._report import Comparison, Entry, GradcheckReport, Kink, RuleCheck
from backprop_jax.checking._jaxpr import HandRules, Kept, RuleUse

__all__ = ["gradcheck", "assert_gradcheck", "GradcheckReport", "Entry", "Comparison", "Kink", "RuleCheck",
           "without_hand_rules", "hand_rules", "HandRules", "RuleUse", "Kept"]
