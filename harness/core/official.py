"""The `official` profile: the official code's score conversion, reproduced on demand, without torch.

The official code (docs/method.md, "The official code and why it differs") puts b in the last row of
C = [[A, 1 - b], [b, 0.5]], seeds torch's CPU generator with `manual_seed(0)`, starts from
`torch.rand(m + 1)` (float32), runs Adam (lr 0.1, betas (0.9, 0.999), eps 1e-8) for a fixed number of
steps on

    loss(s) = -(sum_ij C_ij log(max(F(s_i - s_j), 1e-6)) - sum_i s_i^2 / 2),

and min-max scales the m + 1 latent scores to 0-100, returning the test entry. Re-scoring must work
where torch is absent, so everything here is NumPy in float32, batched over test images.

The start value: torch's CPU generator is MT19937 seeded like the reference `init_genrand`, and a
float32 uniform takes the low 24 bits of one 32-bit draw times 2^-24. NumPy's legacy RandomState
uses the same seeding for an integer seed and hands out the raw 32-bit draws through
`randint(0, 2**32, dtype=uint32)`; tests/test_official.py checks the result against torch itself.
"""
from __future__ import annotations

import numpy as np
from scipy.special import erf

from harness.core.levels import LEVEL_WEIGHTS
from harness.core.scaling import build_matrices, minmax_0_100
from harness.core.vocabulary import LINKS

CLAMP = np.float32(1e-6)
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8


def torch_rand(n: int, seed: int = 0) -> np.ndarray:
    """What `torch.manual_seed(seed); torch.rand(n)` returns on CPU, as float32."""
    raw = np.random.RandomState(seed).randint(0, 2**32, size=n, dtype=np.uint32)
    return ((raw & np.uint32(0xFFFFFF)).astype(np.float32) * np.float32(2.0**-24)).astype(np.float32)


def preference_fp16(logits, temperature: float) -> np.ndarray:
    """P(second better) per row of five level logits in the official code's float16 arithmetic.

    The released model runs in float16 and the official code never casts its logits up: logits / T,
    a softmax WITHOUT max-subtraction, and the weighting with float16 weights all run in float16.
    Following torch's half-precision rules, every element-wise step is rounded to float16 and each sum
    is accumulated in float32 and rounded to float16 once. Extreme logits overflow (or all underflow)
    the float16 exponential and give NaN, as the official code does; the caller decides what a NaN
    means (the scoring layer fails the pair with a reason). Returns float64 values of float16 numbers.
    """
    x = np.asarray(logits, dtype=np.float64)
    w16 = LEVEL_WEIGHTS.astype(np.float16)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        z = x.astype(np.float16) / np.float16(temperature)
        e = np.exp(z)
        total = e.astype(np.float32).sum(axis=-1, keepdims=True).astype(np.float16)
        p = e / total
        b = (p * w16).astype(np.float32).sum(axis=-1).astype(np.float16)
    return b.astype(np.float64)


def _loss_gradient(C: np.ndarray, s: np.ndarray, link: str) -> np.ndarray:
    """d loss / d s in float32, as autograd computes it, the clamp passing no gradient below 1e-6."""
    D = s[:, :, None] - s[:, None, :]
    if link == "logit":
        F = (np.float32(1) / (np.float32(1) + np.exp(-D))).astype(np.float32)
        dF = F * (np.float32(1) - F)
    else:
        F = np.float32(0.5) * (np.float32(1) + erf(D / np.float32(np.sqrt(2.0))).astype(np.float32))
        dF = np.float32(1.0 / np.sqrt(2.0 * np.pi)) * np.exp(np.float32(-0.5) * D * D)
    passes = F >= CLAMP
    G = np.where(passes, -C / np.maximum(F, CLAMP) * dF, np.float32(0)).astype(np.float32)
    return (G.sum(axis=2) - G.sum(axis=1) + s).astype(np.float32)


def official_scores(b, anchor_matrix, *, link: str = "logit", steps: int = 100, seed: int = 0,
                    lr: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Scores (N,) on the official 0-100 scale and the latent vectors (N, m + 1), test last.

    link "logit" with 100 steps is the official scorer, "logit" with 50 the benchmark script,
    "probit" with 100 the Hugging Face remote code. The official code has no notion of a failed
    comparison: a row of b with any NaN gives NaN outputs.
    """
    if link not in LINKS:
        raise ValueError(f"link must be one of {LINKS}, got {link!r}")
    if not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    C, observed = build_matrices(anchor_matrix, b)
    N, n = C.shape[:2]
    if np.any(C[observed] < 0) or np.any(C[observed] > 1):
        raise ValueError("b and the anchor matrix must hold probabilities in [0, 1]")
    full = observed.sum(axis=(1, 2)) == n * (n - 1)
    C32 = C[full].astype(np.float32)
    s = np.tile(torch_rand(n, seed), (C32.shape[0], 1))
    m1 = np.zeros_like(s)
    m2 = np.zeros_like(s)
    b1, b2 = np.float32(BETA1), np.float32(BETA2)
    for t in range(1, steps + 1):
        g = _loss_gradient(C32, s, link)
        m1 = m1 + (g - m1) * (np.float32(1) - b1)  # torch: exp_avg.lerp_(grad, 1 - beta1)
        m2 = m2 * b2 + np.float32(1 - BETA2) * g * g
        step_size = np.float32(lr / (1 - BETA1**t))
        denom = np.sqrt(m2) / np.float32(np.sqrt(1 - BETA2**t)) + np.float32(EPS)
        s = (s - step_size * (m1 / denom)).astype(np.float32)
    latent = np.full((N, n), np.nan)
    latent[full] = s
    return minmax_0_100(latent.astype(np.float64)), latent


def official_scores_torch(b, anchor_matrix, *, link: str = "logit", steps: int = 100, seed: int = 0,
                          lr: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """The same procedure the way the official code runs it: torch autograd and torch.optim.Adam,
    one test image at a time, reseeding before each. Needs torch (imported here, not at module
    import); it is the ground truth for `official_scores` and the baseline of bench/map_speed.py."""
    import torch

    if link not in LINKS:
        raise ValueError(f"link must be one of {LINKS}, got {link!r}")
    C, observed = build_matrices(anchor_matrix, b)
    N, n = C.shape[:2]
    latent = np.full((N, n), np.nan)
    for k in np.flatnonzero(observed.sum(axis=(1, 2)) == n * (n - 1)):
        Ck = torch.tensor(C[k], dtype=torch.float32)
        torch.manual_seed(seed)
        s = torch.rand(n).requires_grad_(True)
        opt = torch.optim.Adam([s], lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            D = s[:, None] - s[None, :]
            F = torch.sigmoid(D) if link == "logit" else 0.5 * (1 + torch.erf(D / np.sqrt(2.0)))
            loss = -(torch.sum(Ck * torch.log(torch.clamp(F, min=float(CLAMP)))) - torch.sum(s**2) / 2)
            loss.backward()
            opt.step()
        latent[k] = s.detach().numpy()
    return minmax_0_100(latent), latent
