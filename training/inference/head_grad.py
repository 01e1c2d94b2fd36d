"""The classifier heads after Grad-CAM's layer in NumPy: class logits and the target logit's gradient.

Grad-CAM needs ``dY/dA`` for the activations ``A`` ``(N, 2048, h, w)`` of ``cam_layer`` and one logit
``Y``; it flows only through ``model._head`` (``training.model.networks``, eval mode: no dropout):
``resnet50`` = average pool + ``fc``; ``resnet50_lstm`` = ``A`` in raster order as ``h*w`` time steps
through the stacked torch LSTMs ``head.lstms.{i}`` (zero initial state), the last step into ``head.fc``,
differentiated by backpropagation through time (``sequence`` "column": the map read column after column,
the model file's ``sequence_order``).  ``K`` 1 (binary) stays ``(N, 1)``.  All in float32,
like torch; the first LSTM's input projection and its gradient are single matmuls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

HEAD_ARCHS = ("resnet50", "resnet50_lstm")  # the architectures whose head this module computes

_F32 = np.float32


def _as_array(value: Any) -> np.ndarray:
    """A NumPy array from an array or a tensor-like object (``.detach().cpu().float().numpy()``, duck-typed)."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):
        return value.detach().cpu().float().numpy()
    return np.asarray(value)


def _lstm_forward(gx: np.ndarray, w_hh_t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One LSTM layer, time-major, gates reordered (i, f, o, g) and the i, f, o pre-activations halved
    (``sigmoid(z) = (1 + tanh(z / 2)) / 2``): ``gx`` ``(T, N, 4H)`` the input projections with the biases,
    ``w_hh_t`` ``(H, 4H)``.  Returns the outputs ``(T, N, H)``, the gates and ``c`` ``(T + 1, N, H)``."""
    steps, n, four = gx.shape
    hid = four // 4
    gates, cs, hs = np.empty_like(gx), np.zeros((steps + 1, n, hid), _F32), np.empty((steps, n, hid), _F32)
    h = np.zeros((n, hid), _F32)
    for t in range(steps):
        a = np.tanh(gx[t] + h @ w_hh_t, out=gates[t])
        sig = a[:, :3 * hid]
        sig *= 0.5
        sig += 0.5
        c = np.add(a[:, hid:2 * hid] * cs[t], a[:, :hid] * a[:, 3 * hid:], out=cs[t + 1])
        h = np.multiply(a[:, 2 * hid:3 * hid], np.tanh(c), out=hs[t])
    return hs, gates, cs


def _lstm_backward(dhs: np.ndarray, w_hh: np.ndarray, gates: np.ndarray, cs: np.ndarray) -> np.ndarray:
    """Backpropagation through time of one layer (:func:`_lstm_forward`'s layout): d/d(gate pre-activations,
    unhalved) ``(T, N, 4H)`` from d/d(outputs) ``dhs`` ``(T, N, H)``; ``w_hh`` ``(4H, H)`` not halved."""
    steps, n, four = gates.shape
    hid = four // 4
    dz, tcs = np.empty_like(gates), np.tanh(cs[1:])
    dact = np.empty_like(gates)  # the gates' derivatives: s (1 - s) for i, f, o and 1 - g^2 for g
    np.multiply(gates[..., :3 * hid], 1.0 - gates[..., :3 * hid], out=dact[..., :3 * hid])
    np.subtract(1.0, gates[..., 3 * hid:] ** 2, out=dact[..., 3 * hid:])
    dh_next, dc = np.zeros((n, hid), _F32), np.zeros((n, hid), _F32)
    for t in range(steps - 1, -1, -1):
        a, d = gates[t], dz[t]
        dh = dhs[t] + dh_next
        do = np.multiply(dh, tcs[t], out=d[:, 2 * hid:3 * hid])
        dc += (dh - do * tcs[t]) * a[:, 2 * hid:3 * hid]
        np.multiply(dc, a[:, 3 * hid:], out=d[:, :hid])
        np.multiply(dc, cs[t], out=d[:, hid:2 * hid])
        np.multiply(dc, a[:, :hid], out=d[:, 3 * hid:])
        d *= dact[t]
        dc *= a[:, hid:2 * hid]
        dh_next = d @ w_hh
    return dz


class HeadGradient:
    """The classifier head after Grad-CAM's layer, in NumPy: logits and d(target logit)/dA."""

    def __init__(self, arch: str, weights: Mapping[str, Any], sequence: str = "raster"):
        w = {k: _as_array(v).astype(_F32) for k, v in weights.items() if k.startswith(self.head_keys(arch))}
        if sequence not in ("raster", "column"):
            raise ValueError(f"unknown sequence order {sequence!r}")
        self.arch = arch
        self._column = arch == "resnet50_lstm" and sequence == "column"
        fc = "fc." if arch == "resnet50" else "head.fc."
        self._fc_w, self._fc_b = w[fc + "weight"], w[fc + "bias"]
        self._layers: list[tuple[np.ndarray, ...]] = []
        while arch == "resnet50_lstm" and f"head.lstms.{len(self._layers)}.weight_ih_l0" in w:
            p = f"head.lstms.{len(self._layers)}."
            w_ih, w_hh = w[p + "weight_ih_l0"], w[p + "weight_hh_l0"]
            hid = w_hh.shape[1]
            order = np.r_[0:2 * hid, 3 * hid:4 * hid, 2 * hid:3 * hid]  # torch's (i, f, g, o) -> (i, f, o, g)
            half = np.where(np.arange(4 * hid) < 3 * hid, 0.5, 1.0).astype(_F32)[:, None]
            w_ih, w_hh = w_ih[order], w_hh[order]
            bias = (w[p + "bias_ih_l0"] + w[p + "bias_hh_l0"])[order] * half[:, 0]
            # forward: (W_ih, W_hh.T, bias) with i, f, o halved; backward: W_ih, W_hh as they are
            self._layers.append((w_ih * half, np.ascontiguousarray((w_hh * half).T), bias, w_ih, w_hh))
        if arch == "resnet50_lstm" and not self._layers:
            raise ValueError("no LSTM weights (head.lstms.0.weight_ih_l0) in the state dict")
        if self._layers:
            self._w0_t = np.ascontiguousarray(self._layers[0][3].T)  # (C, 4H): the input's gradient

    @classmethod
    def from_state_dict(cls, arch: str, state: Mapping[str, Any], sequence: str = "raster") -> HeadGradient | None:
        """The head of a model's state dict (arrays or tensors); None for an arch without such a head."""
        if arch not in HEAD_ARCHS:
            return None
        return cls(arch, {k: v for k, v in state.items() if k.startswith(cls.head_keys(arch))}, sequence)

    @staticmethod
    def head_keys(arch: str) -> tuple[str, ...]:
        """The state-dict key prefixes of the head of ``arch``."""
        if arch == "resnet50":
            return ("fc.",)
        if arch == "resnet50_lstm":
            return ("head.",)
        raise ValueError(f"no NumPy head for architecture {arch!r}")

    def _forward(self, a: np.ndarray) -> tuple[np.ndarray, list]:
        """Logits ``(N, K)`` and the LSTM layers' ``(gates, c)`` for the backward pass."""
        n, c, steps = a.shape[0], a.shape[1], a.shape[2] * a.shape[3]
        if self.arch == "resnet50":
            return a.mean(axis=(2, 3)) @ self._fc_w.T + self._fc_b, []
        caches = []
        hs = np.matmul(self._layers[0][0], a.reshape(n, c, steps)).transpose(2, 0, 1)  # (T, N, 4H), not yet h
        for k, (w_ih, w_hh_t, bias, _, _) in enumerate(self._layers):
            gx = (hs @ w_ih.T if k else np.ascontiguousarray(hs)) + bias
            hs, gates, cs = _lstm_forward(gx, w_hh_t)
            caches.append((gates, cs))
        return hs[-1] @ self._fc_w.T + self._fc_b, caches

    def _as_sequence(self, features: np.ndarray) -> np.ndarray:
        """``(N, C, h, w)`` float32 laid out so that a raster reshape gives the head's time steps."""
        a = np.asarray(features, dtype=_F32)
        return np.ascontiguousarray(a.transpose(0, 1, 3, 2)) if self._column else a

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Class logits ``(N, K)`` float32 for activations ``(N, C, h, w)``."""
        return self._forward(self._as_sequence(features))[0].astype(_F32)

    def gradient(self, features: np.ndarray, target: int | None) -> tuple[np.ndarray, np.ndarray]:
        """``(logits (N, K), grads (N, C, h, w))`` float32, ``grads[n] = d logits[n, t] / d features[n]``;
        ``t`` = 0 for ``target`` None (the single logit of a binary model)."""
        a = self._as_sequence(features)
        logits, caches = self._forward(a)
        t = 0 if target is None else int(target)
        if not 0 <= t < logits.shape[1]:
            raise IndexError(f"target {t} outside the head's {logits.shape[1]} logits")
        if self.arch == "resnet50":
            grads = np.empty(a.shape, dtype=_F32)
            grads[...] = (self._fc_w[t] / max(1, a.shape[2] * a.shape[3]))[None, :, None, None]
            return logits.astype(_F32), grads
        dhs = np.zeros(caches[-1][1][1:].shape, _F32)  # (T, N, H) of the last layer
        dhs[-1] = self._fc_w[t]
        for k in range(len(self._layers) - 1, -1, -1):
            dz = _lstm_backward(dhs, self._layers[k][4], *caches[k])
            if k:
                dhs = dz @ self._layers[k][3]
        grads = np.matmul(self._w0_t, dz.transpose(1, 2, 0)).reshape(a.shape)  # (C, 4H) @ (N, 4H, T)
        if self._column:
            grads = np.ascontiguousarray(grads.transpose(0, 1, 3, 2))
        return logits.astype(_F32), grads


__all__ = ["HeadGradient", "HEAD_ARCHS"]
