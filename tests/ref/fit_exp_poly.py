#!/usr/bin/env python3
"""The degree-5 polynomial of dd_sigmoid16 (src/ops/act.h): exp(r) ~ 1 + c1 r + ... + c5 r^5
on |r| <= ln2 / 2, fitted for relative error by Lawson's iteratively reweighted least squares
(which converges to the minimax fit), then checked in float32 Horner steps.

    /usr/bin/python3 tests/ref/fit_exp_poly.py

prints the coefficients act.h carries and their errors (0.77 ulp in exact arithmetic)."""
import numpy as np

h = np.log(2) / 2
r = np.cos(np.linspace(0, np.pi, 4001)) * h * 1.0005  # Chebyshev-spaced, a little past h
f = np.exp(r)
A = np.stack([r**k for k in range(1, 6)], 1) / f[:, None]  # (p(r) - 1) / e^r, relative
b = (f - 1) / f
w = np.ones_like(r)
for _ in range(300):
    sw = np.sqrt(w)
    c, *_ = np.linalg.lstsq(A * sw[:, None], b * sw, rcond=None)
    e = np.abs(A @ c - b)
    w = w * e
    w /= w.sum()
print(f"max relative error {e.max():.3e} ({e.max() / 2**-23:.2f} ulp)")
for k, v in enumerate(c, 1):
    print(f"c{k} = {v:.9e}")

c32 = c.astype(np.float32)
rr = np.linspace(-h, h, 200001).astype(np.float32)
p = np.float32(c32[4])
for k in (3, 2, 1, 0):
    p = (p * rr + c32[k]).astype(np.float32)
p = (p * rr + np.float32(1)).astype(np.float32)
exact = np.exp(rr.astype(np.float64))
print(f"float32 Horner, unfused: {np.max(np.abs(p - exact) / exact) / 2**-23:.2f} ulp")
