"""The example networks of the ONNX import, trained by the project in NumPy (docs/onnx.md,
Examples): a small CNN and a small attention encoder on scikit-learn's 8x8 digits.

Both are trained with Adam on softmax cross-entropy, mini-batches drawn from a seeded
generator, so a seed gives the same weights on every run. Each model computes its float
logits (:meth:`FloatCNN.logits`, :meth:`FloatAttention.logits`) and writes itself as a float
ONNX model (``onnx_model``), which onnxruntime or the project then quantizes.

- :class:`FloatCNN`: Conv 3x3 (padding 1) -> ReLU -> MaxPool 2x2 -> Flatten -> Gemm, on
  ``(n, 1, 8, 8)`` images (:func:`golden.onnx.build.float_cnn`).
- :class:`FloatAttention`: tokens are the image's rows (8 tokens of 8 pixels); an embedding
  (MatMul plus a per-position bias), ``layers`` single-head encoder layers (Q, K, V
  projections, softmax attention, output projection, residual; a ReLU feed-forward block,
  residual), the tokens max-pooled and a Gemm classifier. The ``1/sqrt(d)`` of the attention
  is folded into the query weights when exported.
"""

from dataclasses import dataclass

import numpy as np

from golden.onnx.graph import im2col

__all__ = ["digits_images", "FloatCNN", "train_cnn", "FloatAttention", "train_attention",
           "accuracy"]


def digits_images(seed=0):
    """scikit-learn's digits as ``(x_train, x_test, y_train, y_test)``, the images
    ``(n, 8, 8)`` float32 in 0..1 (pixels / 16), split as :func:`golden.network.digits_split`."""
    from golden.network import digits_split
    x_train, x_test, y_train, y_test = digits_split(seed)
    return ((x_train / 16).reshape(-1, 8, 8).astype(np.float32),
            (x_test / 16).reshape(-1, 8, 8).astype(np.float32), y_train, y_test)


def accuracy(logits, labels):
    """The fraction of rows of ``logits`` whose largest entry is the label."""
    return float((np.asarray(logits).argmax(axis=-1) == labels).mean())


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class _Adam:
    """Adam over a dict of parameter arrays, updated in place."""

    def __init__(self, params, rate):
        self.params, self.rate, self.steps = params, rate, 0
        self.m = {key: np.zeros_like(value) for key, value in params.items()}
        self.v = {key: np.zeros_like(value) for key, value in params.items()}

    def step(self, grads, b1=0.9, b2=0.999, eps=1e-8):
        self.steps += 1
        for key, grad in grads.items():
            self.m[key] = b1 * self.m[key] + (1 - b1) * grad
            self.v[key] = b2 * self.v[key] + (1 - b2) * grad * grad
            m = self.m[key] / (1 - b1 ** self.steps)
            v = self.v[key] / (1 - b2 ** self.steps)
            self.params[key] -= self.rate * m / (np.sqrt(v) + eps)


def _train(params, gradients, x, y, epochs, rate, batch, seed):
    """Mini-batch Adam: ``gradients(params, x, y)`` gives the loss gradients."""
    rng = np.random.default_rng(seed)
    adam = _Adam(params, rate)
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            chosen = order[start:start + batch]
            adam.step(gradients(params, x[chosen], y[chosen]))
    return params


def _check_training(x, y, epochs, seed):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[1:] != (8, 8) or not np.isfinite(x).all():
        raise ValueError(f"images must be (n, 8, 8) finite numbers, not of shape {x.shape}")
    y = np.asarray(y)
    if y.shape != (len(x),) or y.dtype.kind not in "iu" or y.min() < 0 or y.max() > 9:
        raise ValueError("labels must be one digit 0..9 per image")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, not {epochs!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    return x, y


@dataclass(frozen=True)
class FloatCNN:
    """Conv 3x3 (``conv_weight`` (channels, 1, 3, 3), padding 1), ReLU, MaxPool 2x2 stride 2,
    Flatten (channel-major, as ONNX), dense (``dense_weight`` (10, channels * 16))."""
    conv_weight: np.ndarray
    conv_bias: np.ndarray
    dense_weight: np.ndarray
    dense_bias: np.ndarray

    def forward(self, images):
        """``(logits, cache)`` for ``images`` (n, 8, 8) or (n, 1, 8, 8)."""
        x = np.asarray(images, dtype=np.float64).reshape(-1, 1, 8, 8)
        n, channels = len(x), len(self.conv_weight)
        cols, _ = im2col(x, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 0.0)
        z = (cols @ self.conv_weight.reshape(channels, -1).T + self.conv_bias).reshape(
            n, 8, 8, channels)
        r = np.maximum(z, 0)
        windows = r.reshape(n, 4, 2, 4, 2, channels)
        pooled = windows.max(axis=(2, 4))                                  # (n, 4, 4, c)
        flat = pooled.transpose(0, 3, 1, 2).reshape(n, -1)
        logits = flat @ self.dense_weight.T + self.dense_bias
        return logits, (cols, z, windows, pooled, flat)

    def logits(self, images):
        """Float logits (n, 10) of ``images`` (n, 8, 8) or (n, 1, 8, 8)."""
        return self.forward(images)[0]

    def onnx_model(self):
        """The float ONNX model: input ``x`` (batch, 1, 8, 8), output ``y`` (batch, 10)."""
        from golden.onnx.build import float_cnn
        return float_cnn(self.conv_weight, self.conv_bias, self.dense_weight,
                         self.dense_bias, (1, 8, 8))


def _cnn_gradients(params, x, y):
    model = FloatCNN(params["wc"], params["bc"], params["wd"], params["bd"])
    logits, (cols, z, windows, pooled, flat) = model.forward(x)
    n, channels = len(x), len(params["wc"])
    dlogits = _softmax(logits)
    dlogits[np.arange(n), y] -= 1
    dlogits /= n
    dflat = dlogits @ params["wd"]
    dpooled = dflat.reshape(n, channels, 4, 4).transpose(0, 2, 3, 1)
    winner = windows == pooled[:, :, None, :, None, :]
    dz = (winner * dpooled[:, :, None, :, None, :]).reshape(n, 8, 8, channels) * (z > 0)
    dz = dz.reshape(-1, channels)
    return {"wc": (dz.T @ cols).reshape(params["wc"].shape), "bc": dz.sum(axis=0),
            "wd": dlogits.T @ flat, "bd": dlogits.sum(axis=0)}


def train_cnn(x, y, channels=8, epochs=20, rate=0.01, batch=32, seed=0):
    """A :class:`FloatCNN` trained on images ``x`` (n, 8, 8) and labels ``y``.

    ``channels`` convolution filters; ``epochs`` passes of mini-batches of ``batch``;
    ``seed`` seeds the initial weights and the batch order.
    """
    x, y = _check_training(x, y, epochs, seed)
    rng = np.random.default_rng(seed)
    params = {"wc": rng.normal(0, 1 / 3, (channels, 1, 3, 3)), "bc": np.zeros(channels),
              "wd": rng.normal(0, (channels * 16) ** -0.5, (10, channels * 16)),
              "bd": np.zeros(10)}
    params = _train(params, _cnn_gradients, x, y, epochs, rate, batch, seed)
    return FloatCNN(params["wc"], params["bc"], params["wd"], params["bd"])


@dataclass(frozen=True)
class FloatAttention:
    """A small encoder on the image rows (see the module).

    ``params`` holds ``embed`` (8, d), ``position`` (8, d) and ``classifier`` (d, 10),
    ``classifier_bias`` (10,), and per layer ``l``: ``q{l}``, ``k{l}``, ``v{l}``, ``o{l}``
    (d, d), ``up{l}`` (d, hidden), ``up_bias{l}``, ``down{l}`` (hidden, d), ``down_bias{l}``.
    Weights multiply from the right (``h @ W``), as in the ONNX MatMul.
    """
    params: dict
    layers: int

    @property
    def width(self):
        return self.params["embed"].shape[1]

    def forward(self, images, keep=None):
        """``(logits, cache)`` for ``images`` (n, 8, 8); ``cache["layer"][l]["p"]`` holds layer
        ``l``'s attention probabilities (n, tokens, tokens), query by key.

        ``keep``: tokens kept after each layer (cascade token pruning, as
        :func:`golden.onnx.attention.run_pruned` on the integers): the tokens with the largest
        cumulative attention probability received, ties to the lower index; None keeps all.
        """
        p = self.params
        x = np.asarray(images, dtype=np.float64)
        scale = 1 / np.sqrt(self.width)
        h = x @ p["embed"] + p["position"]
        cache = {"x": x, "h": [h], "layer": [], "kept": []}
        importance = np.zeros(x.shape[:2])
        rows = np.arange(len(x))[:, None]
        for l in range(self.layers):
            q, k, v = h @ p[f"q{l}"] * scale, h @ p[f"k{l}"], h @ p[f"v{l}"]
            probs = _softmax(q @ k.transpose(0, 2, 1))
            a = probs @ v
            r = h + a @ p[f"o{l}"]
            u = r @ p[f"up{l}"] + p[f"up_bias{l}"]
            g = np.maximum(u, 0)
            h = r + g @ p[f"down{l}"] + p[f"down_bias{l}"]
            cache["layer"].append(dict(q=q, k=k, v=v, p=probs, a=a, r=r, u=u, g=g))
            if keep is not None:
                importance = importance + probs.sum(axis=1)
                order = np.argsort(-importance, axis=1, kind="stable")[:, :keep[l]]
                kept = np.sort(order, axis=1)
                h, importance = h[rows, kept], importance[rows, kept]
                cache["kept"].append(kept)
            cache["h"].append(h)
        winner = h.argmax(axis=1)                                         # (n, d)
        pooled = h.max(axis=1)
        cache["winner"], cache["pooled"] = winner, pooled
        return pooled @ p["classifier"] + p["classifier_bias"], cache

    def logits(self, images, keep=None):
        """Float logits (n, 10) of ``images`` (n, 8, 8), ``keep`` tokens after each layer."""
        return self.forward(images, keep)[0]

    def onnx_model(self):
        """The float ONNX model: input ``x`` (batch, 8, 8), output ``y`` (batch, 10); the
        softmax outputs are named ``p0``, ``p1``, ..., the layer outputs ``h1``, ``h2``, ...
        (:mod:`golden.onnx.attention` finds them by these names)."""
        from golden.onnx.attention import float_attention
        return float_attention(self.params, self.layers)


def _attention_gradients(params, x, y, layers, keep=None):
    model = FloatAttention(params, layers)
    logits, cache = model.forward(x, keep)
    n, tokens = x.shape[:2]
    scale = 1 / np.sqrt(model.width)

    def weight_grad(inputs, grad):
        return inputs.reshape(-1, inputs.shape[-1]).T @ grad.reshape(-1, grad.shape[-1])

    dlogits = _softmax(logits)
    dlogits[np.arange(n), y] -= 1
    dlogits /= n
    grads = {"classifier": cache["pooled"].T @ dlogits, "classifier_bias": dlogits.sum(axis=0)}
    dpooled = dlogits @ params["classifier"].T
    dh = np.zeros_like(cache["h"][-1])
    rows, cols = np.meshgrid(np.arange(n), np.arange(model.width), indexing="ij")
    dh[rows, cache["winner"], cols] = dpooled
    for l in reversed(range(layers)):
        c, h = cache["layer"][l], cache["h"][l]
        if keep is not None:              # the pruned tokens' gradient is 0
            full = np.zeros((n, c["r"].shape[1], model.width))
            full[np.arange(n)[:, None], cache["kept"][l]] = dh
            dh = full
        dr = dh.copy()
        grads[f"down{l}"] = weight_grad(c["g"], dh)
        grads[f"down_bias{l}"] = dh.sum(axis=(0, 1))
        du = (dh @ params[f"down{l}"].T) * (c["u"] > 0)
        grads[f"up{l}"] = weight_grad(c["r"], du)
        grads[f"up_bias{l}"] = du.sum(axis=(0, 1))
        dr += du @ params[f"up{l}"].T
        grads[f"o{l}"] = weight_grad(c["a"], dr)
        da = dr @ params[f"o{l}"].T
        dprobs = da @ c["v"].transpose(0, 2, 1)
        dv = c["p"].transpose(0, 2, 1) @ da
        ds = c["p"] * (dprobs - (dprobs * c["p"]).sum(axis=-1, keepdims=True))
        dq = ds @ c["k"]
        dk = ds.transpose(0, 2, 1) @ c["q"]
        grads[f"q{l}"] = weight_grad(h, dq) * scale
        grads[f"k{l}"] = weight_grad(h, dk)
        grads[f"v{l}"] = weight_grad(h, dv)
        dh = dr + (dq * scale) @ params[f"q{l}"].T + dk @ params[f"k{l}"].T + \
            dv @ params[f"v{l}"].T
    grads["embed"] = weight_grad(x, dh)
    grads["position"] = dh.sum(axis=0)
    return grads


def train_attention(x, y, width=16, hidden=32, layers=2, epochs=30, rate=0.005, batch=32,
                    seed=0, pruning=False):
    """A :class:`FloatAttention` trained on images ``x`` (n, 8, 8) and labels ``y``.

    ``width`` is the token width d, ``hidden`` the feed-forward width, ``layers`` the
    encoder layers; ``epochs`` passes of mini-batches of ``batch``; ``seed`` seeds the
    initial weights and the batch order. With ``pruning``, every mini-batch runs with
    cascade token pruning, keeping a random 2..8 tokens after every layer (the same number
    for each), so the model learns to classify from the tokens pruning keeps.
    """
    x, y = _check_training(x, y, epochs, seed)
    rng = np.random.default_rng(seed)

    def init(rows, cols):
        return rng.normal(0, rows ** -0.5, (rows, cols))

    params = {"embed": init(8, width), "position": rng.normal(0, 0.1, (8, width)),
              "classifier": init(width, 10), "classifier_bias": np.zeros(10)}
    for l in range(layers):
        params.update({f"q{l}": init(width, width), f"k{l}": init(width, width),
                       f"v{l}": init(width, width), f"o{l}": init(width, width) * 0.5,
                       f"up{l}": init(width, hidden), f"up_bias{l}": np.zeros(hidden),
                       f"down{l}": init(hidden, width) * 0.5, f"down_bias{l}": np.zeros(width)})
    keeps = np.random.default_rng(seed + 1)

    def gradients(p, xb, yb):
        keep = (int(keeps.integers(2, 9)),) * layers if pruning else None
        return _attention_gradients(p, xb, yb, layers, keep)

    params = _train(params, gradients, x, y, epochs, rate, batch, seed)
    return FloatAttention(params, layers)
