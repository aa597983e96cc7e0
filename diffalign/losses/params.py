"""Loss hyper-parameters (torch-free, so configs can be validated without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LossParams"]


@dataclass
class LossParams:
    """Hyper-parameters of the loss kinds. Each kind reads only the fields it documents.

    Attributes:
        beta (float): β, the inverse temperature of the implicit reward ``β·r``. Text DPO
            uses 0.01–0.5; diffusion DPO uses thousands (paper form, see the diffusion
            method docs). For ``ipo`` / ``sppo_hard`` / ``cal_dpo`` it sets the target
            ``1/(2β)``; for ``hinge`` it is ``1/margin``; for ``orpo`` it weighs the
            odds-ratio term (λ). Default 0.1.
        label_smoothing (float): ε of ``cdpo`` (label smoothing), ``robust`` (label-flip
            rate, must be < 0.5) and ``aot``. Default 0.0.
        exo_epsilon (float): ε of ``exo_pair`` (must be > 0). Default 1e-3.
        discopop_tau (float): τ of ``discopop``. Default 0.05.
        simpo_gamma (float): target margin γ of ``simpo``. Default 0.5.
        cpo_alpha (float): weight of the NLL term in ``cpo``. Default 1.0.
        f_alpha (float): α of ``f_alpha`` (paper form, in (0, 1)). Default 0.5.
        dpop_lambda (float): λ of ``dpop``. Default 50.0.
        desirable_weight (float): λ_D of ``kto``. Default 1.0.
        undesirable_weight (float): λ_U of ``kto``. Default 1.0.
    """

    beta: float = 0.1
    label_smoothing: float = 0.0
    exo_epsilon: float = 1e-3
    discopop_tau: float = 0.05
    simpo_gamma: float = 0.5
    cpo_alpha: float = 1.0
    f_alpha: float = 0.5
    dpop_lambda: float = 50.0
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0
