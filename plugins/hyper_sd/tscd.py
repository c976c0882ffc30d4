"""Trajectory Segmented Consistency Distillation (TSCD), the core of Hyper-SD.

Paper: "Hyper-SD: Trajectory Segmented Consistency Model for Efficient Image Synthesis", Ren et al., arXiv 2404.13686,
§3.1 and Fig. 2. No official training code exists (HF discussion #18); the loss below follows methods.md §3(a), which
marks the exact form as a reconstruction.

Notation (timesteps are diffusers' discrete indices 0..T-1; ``CLEAN = -1`` is clean data, ᾱ = 1)::

    k                      number of segments of the current stage (8 -> 4 -> 2 -> 1)
    e_m = m T / k          segment edges in "time" units, m = 0..k (multiples of 125 for k = 8)
    b_m = e_m - 1          the same edges as timestep indices: b_k = 999, ..., b_0 = -1 = CLEAN
    segment m              the timesteps t with b_{m-1} < t <= b_m
    f(x_t, t)              DDIM_jump(x_t, eps(x_t, t), t -> b_{m-1})     (the segment's lower edge; k = 1: x0)

The index convention ``b_m = e_m - 1`` makes the trailing DDIM timesteps of an N-step sampler exactly the segment
edges of k = N (999, 874, ..., 124 for N = 8), so one sampling step is one segment jump (methods.md §3(c)).

Consistency pair (LCM-style, on forward-noised data): ``t`` on the teacher's DDIM grid, ``t' = max(t - Δ, b_{m-1})``,
``x̂_{t'} = DDIM_jump(x_t, cfg(eps_teacher), t -> t')``; loss ``d(f_θ(x_t, t), stopgrad f_{θ⁻}(x̂_{t'}, t'))`` with
the boundary condition ``f(x̂_{t'}, t') = x̂_{t'}`` when ``t'`` is the segment's lower edge.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from zoo.diffusion.schedule import CLEAN, ddim_jump


def segment_edges(k: int, num_train_timesteps: int = 1000) -> list[int]:
    """``[e_0, ..., e_k]`` = ``m T / k`` (rounded); ``k`` must divide into at least one timestep per segment."""
    if not isinstance(k, int) or not 1 <= k <= num_train_timesteps:
        raise ValueError(f"segments={k!r} must be an integer in 1..{num_train_timesteps}")
    return [int(round(m * num_train_timesteps / k)) for m in range(k + 1)]


def segment_boundaries(k: int, num_train_timesteps: int = 1000) -> list[int]:
    """The edges as timestep indices, ``b_m = e_m - 1``: ``[-1, T/k - 1, ..., T - 1]`` (``-1`` = clean)."""
    return [edge - 1 for edge in segment_edges(k, num_train_timesteps)]


def segment_lower_edge(t, k: int, num_train_timesteps: int = 1000) -> torch.Tensor:
    """``b_{m-1}`` for each timestep in ``t`` (int or tensor): the timestep its segment maps to (``-1`` = clean).

    Equivalently, with ``e = t + 1`` in time units, ``e_{m-1} - 1`` for ``e_{m-1} < e <= e_m``.
    """
    steps = torch.as_tensor(t).long()
    if ((steps < 0) | (steps >= num_train_timesteps)).any():
        raise ValueError(f"timesteps must lie in 0..{num_train_timesteps - 1}")
    edges = torch.tensor(segment_edges(k, num_train_timesteps), dtype=torch.long, device=steps.device)
    # segment index m: the first edge e_m >= t + 1 (searchsorted on the right edges), lower edge e_{m-1}.
    m = torch.searchsorted(edges[1:], steps + 1, right=False)
    return edges[m] - 1


def consistency_function(x_t: torch.Tensor, eps: torch.Tensor, t, k: int, alphas_cumprod: torch.Tensor
                         ) -> torch.Tensor:
    """``f(x_t, t) = DDIM_jump(x_t, eps, t -> b_{m-1})``: the segmented consistency function (k = 1: ``x0_hat``)."""
    return ddim_jump(x_t, eps, t, segment_lower_edge(t, k, len(alphas_cumprod)), alphas_cumprod)


def teacher_grid(num_ddim_steps: int = 50, num_train_timesteps: int = 1000) -> torch.Tensor:
    """The teacher solver's timesteps ``[Δ - 1, 2Δ - 1, ..., T - 1]`` with ``Δ = T / num_ddim_steps`` (LCM's grid)."""
    delta = num_train_timesteps // num_ddim_steps
    return torch.arange(1, num_ddim_steps + 1, dtype=torch.long) * delta - 1


def segment_grid(k: int, num_ddim_steps: int = 50, num_train_timesteps: int = 1000) -> torch.Tensor:
    """Teacher timesteps anchored at the segment tops: ``b_m, b_m - Δ, b_m - 2Δ, ...`` down to (not including)
    ``b_{m-1}`` in every segment ``m``, ascending, ``Δ = T / num_ddim_steps``.

    The N-step sampler (N = k) evaluates the student exactly at the tops ``b_m`` (its trailing timesteps), which
    :func:`teacher_grid` misses whenever ``Δ`` does not divide ``T / k`` (k = 4 with Δ = 20 or 40: 749 and 249 are off
    the grid). Here every top is a training timestep; a segment's last teacher step is shorter when ``Δ`` does not
    divide it (``previous_timestep`` clips it to the edge). For k = 1 this is :func:`teacher_grid`.
    """
    delta = num_train_timesteps // num_ddim_steps
    bounds = segment_boundaries(k, num_train_timesteps)
    points = [t for lower, top in zip(bounds[:-1], bounds[1:]) for t in range(top, lower, -delta)]
    return torch.tensor(sorted(points), dtype=torch.long)


def previous_timestep(t: torch.Tensor, k: int, skip: int, num_train_timesteps: int = 1000) -> torch.Tensor:
    """``t' = max(t - skip, b_{m-1})``: one teacher step back, never past the segment's lower edge."""
    return torch.maximum(t - skip, segment_lower_edge(t, k, num_train_timesteps))


EpsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``eps_fn(x, t, rows) -> eps``: a UNet bound to its prompts (and CFG); ``rows`` are the batch rows of ``x`` (so the
function can pick the matching prompt embeddings), as used by :func:`tscd_targets`."""


def tscd_targets(x_t: torch.Tensor, t: torch.Tensor, k: int, skip: int, teacher_eps: EpsFn, target_eps: EpsFn,
                 alphas_cumprod: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The consistency target ``stopgrad f_{θ⁻}(x̂_{t'}, t')`` and the lower edge, without gradients.

    1. ``t' = max(t - skip, b_{m-1})``                                (one teacher step, clipped to the segment)
    2. ``x̂_{t'} = DDIM_jump(x_t, eps_teacher(x_t, t), t -> t')``     (teacher ODE solver step, CFG inside)
    3. ``target = x̂_{t'}`` where ``t' = b_{m-1}`` (boundary condition), else
       ``DDIM_jump(x̂_{t'}, eps_target(x̂_{t'}, t'), t' -> b_{m-1})`` (EMA target's consistency function)
    """
    with torch.no_grad():
        lower = segment_lower_edge(t, k, len(alphas_cumprod)).to(t.device)
        t_prev = previous_timestep(t, k, skip, len(alphas_cumprod)).to(t.device)
        all_rows = torch.arange(x_t.shape[0], device=x_t.device)
        x_prev = ddim_jump(x_t, teacher_eps(x_t, t, all_rows), t, t_prev, alphas_cumprod)
        at_edge = t_prev == lower
        target = x_prev.clone()
        inside = ~at_edge
        if inside.any():
            idx = inside.nonzero(as_tuple=True)[0]
            eps_prev = target_eps(x_prev[idx], t_prev[idx], idx)
            target[idx] = ddim_jump(x_prev[idx], eps_prev, t_prev[idx], lower[idx], alphas_cumprod)
    return target, lower


def tscd_loss(student_eps: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, target: torch.Tensor,
              lower: torch.Tensor, alphas_cumprod: torch.Tensor, huber_c: float = 0.0) -> torch.Tensor:
    """``d(f_θ(x_t, t), target)`` with ``f_θ = DDIM_jump(x_t, eps_student, t -> b_{m-1})``.

    ``huber_c > 0`` uses the pseudo-Huber distance ``sqrt(||a - b||² + c²) - c`` (per element, as LCM does);
    0 gives the mean squared error.
    """
    prediction = ddim_jump(x_t, student_eps, t, lower, alphas_cumprod)
    diff = (prediction.float() - target.float())
    if huber_c > 0:
        return (torch.sqrt(diff ** 2 + huber_c ** 2) - huber_c).mean()
    return (diff ** 2).mean()


CONFLICT_SOURCES = ("other", "noise")


def conflicting_images(x0: torch.Tensor, t: torch.Tensor, prob: float, min_timestep: int,
                       source: str = "other") -> torch.Tensor:
    """``x0`` with each row at ``t >= min_timestep`` replaced, with probability ``prob``, by the next row's image
    (cyclically; ``source="other"``), so the noisy state's faint signal need not match the row's caption, or by zeros
    (``source="noise"``), so the noisy state is pure noise, as the sampler's first state is. With ``"other"`` rows are
    never their own replacement (a batch of one is returned unchanged)."""
    if source not in CONFLICT_SOURCES:
        raise ValueError(f"conflict source {source!r}: use {' or '.join(map(repr, CONFLICT_SOURCES))}")
    if prob <= 0 or (source == "other" and x0.shape[0] < 2):
        return x0
    swap = (t >= min_timestep) & (torch.rand(t.shape, device=t.device) < prob)
    replacement = x0.roll(-1, dims=0) if source == "other" else torch.zeros_like(x0)
    return torch.where(swap.view(-1, *[1] * (x0.dim() - 1)), replacement, x0)


def stage_of(step: int, stage_steps: Sequence[int]) -> int:
    """Index of the progressive stage that global ``step`` belongs to (``stage_steps`` = steps per stage)."""
    total = 0
    for index, length in enumerate(stage_steps):
        total += int(length)
        if step < total:
            return index
    return len(stage_steps) - 1


__all__ = ["CLEAN", "segment_edges", "segment_boundaries", "segment_lower_edge", "consistency_function",
           "teacher_grid", "segment_grid", "previous_timestep", "tscd_targets", "tscd_loss", "stage_of"]
