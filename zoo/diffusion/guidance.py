"""Classifier-free guidance with one documented convention.

Notation (diffusers, SwiftBrush, DMD2 and AGD code)::

    eps_cfg = eps_uncond + w * (eps_cond - eps_uncond)        # w = 1: conditional only, w = 0: unconditional only

Papers write the scale differently; convert at config load with the helpers below (methods.md §0.2):

==========================================  =====================================  ===================
paper                                       their formula                          diffusers ``w``
==========================================  =====================================  ===================
SwiftBrush v2 (arXiv 2408.14176) Eq. 3      ``eps_c + gamma (eps_c - eps_u)``      ``1 + gamma``
SNOOPI (arXiv 2412.02687) Eq. 4             ``(1 - kappa) eps_u + kappa eps_c``    ``kappa``
Meng et al. guidance distillation           ``omega eps_c - (omega - 1) eps_u``    ``omega``
==========================================  =====================================  ===================

Negative-prompt guidance (SNOOPI Eq. 5) replaces ``eps_uncond`` by the prediction for the negative prompt.
"""

from __future__ import annotations


def cfg(eps_cond, eps_uncond, guidance_scale: float):
    """``eps_uncond + guidance_scale * (eps_cond - eps_uncond)`` (works on tensors and floats)."""
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def scale_from_sbv2_gamma(gamma: float) -> float:
    """SwiftBrush v2's ``gamma`` (Eq. 3) as a diffusers guidance scale."""
    return 1.0 + gamma


def scale_from_snoopi_kappa(kappa: float) -> float:
    """SNOOPI's ``kappa`` (Eq. 4) is already the diffusers guidance scale."""
    return kappa


def uses_cfg(guidance_scale: float | None) -> bool:
    """Whether sampling at ``guidance_scale`` evaluates the unconditional (or negative) branch.

    As in diffusers, CFG is on only for ``guidance_scale > 1``; 0 or 1 both mean "conditional prediction only" (the
    recommended setting of guidance-distilled models such as Hyper-SD's N-step LoRAs).
    """
    return guidance_scale is not None and guidance_scale > 1.0
