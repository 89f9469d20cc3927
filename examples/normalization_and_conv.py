"""Worked problem: normalization, convolution and pooling on hand-sized inputs, by compiler.nn.

1. LayerNorm and BatchNorm of a 2x3 input: the statistics, the normalized numbers, BatchNorm's
   running statistics after one step.
2. conv2d with padding and stride: output size floor((H + 2p - k) / s) + 1 and the values.
3. Max pooling on a 4x4 grid.
4. im2col: the conv as one matrix product, patch matrix (N*OH*OW, C*kh*kw) @ weights (C*kh*kw, O);
   the patches are extracted by the compiler too (a convolution with a one-hot kernel).
5. Parameter counts of a small MLP and a small conv net (nn.summary).

    python examples/normalization_and_conv.py [--out DIR]
"""
from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import compiler as tj  # noqa: E402
import compiler.numpy as cnp  # noqa: E402
from compiler import nn  # noqa: E402

X_NORM = np.array([[1.0, 2.0, 3.0],
                   [2.0, 4.0, 9.0]], np.float32)
LN_WEIGHT = np.array([1.0, 2.0, 0.5], np.float32)
LN_BIAS = np.array([0.0, 1.0, -1.0], np.float32)


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def im2col(x, kh: int, kw: int, stride: int = 1, padding: int = 0):
    """Patch matrix (N*OH*OW, C*kh*kw) of x (N, C, H, W), columns ordered (c, i, j) like the rows of
    w.reshape(O, -1): a convolution with a one-hot kernel copies each window into the channels."""
    n, c = cnp.shape(x)[:2]
    eye = np.eye(c * kh * kw, dtype=np.float32).reshape(c * kh * kw, c, kh, kw)
    patches = nn.conv2d(x, eye, stride=stride, padding=padding)       # (N, C*kh*kw, OH, OW)
    oh, ow = cnp.shape(patches)[2:]
    return cnp.reshape(cnp.transpose(patches, (0, 2, 3, 1)), (n * oh * ow, c * kh * kw))


def conv_by_im2col(x, w, stride: int = 1, padding: int = 0):
    n = cnp.shape(x)[0]
    o, c, kh, kw = cnp.shape(w)
    cols = im2col(x, kh, kw, stride, padding)
    oh = conv_output_size(cnp.shape(x)[2], kh, stride, padding)
    ow = conv_output_size(cnp.shape(x)[3], kw, stride, padding)
    y = cols @ cnp.transpose(cnp.reshape(w, (o, c * kh * kw)))        # (N*OH*OW, O)
    return cnp.transpose(cnp.reshape(y, (n, oh, ow, o)), (0, 3, 1, 2))


def mlp(params, x):
    h = nn.linear(x, params["fc1"]["w"], params["fc1"]["b"])
    h = nn.layer_norm(h, weight=params["norm"]["weight"], bias=params["norm"]["bias"])
    h = nn.relu(h)
    return nn.linear(h, params["fc2"]["w"], params["fc2"]["b"])


def convnet(params, x):
    h = nn.max_pool2d(nn.relu(nn.conv2d(x, params["conv1"]["w"], params["conv1"]["b"], padding=1)), 2)
    h = nn.max_pool2d(nn.relu(nn.conv2d(h, params["conv2"]["w"], params["conv2"]["b"], padding=1)), 2)
    h = cnp.reshape(h, (cnp.shape(h)[0], -1))
    return nn.linear(h, params["fc"]["w"], params["fc"]["b"])


def _params(shapes: dict, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {layer: {k: (rng.standard_normal(s) * 0.1).astype(np.float32) for k, s in entries.items()}
            for layer, entries in shapes.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="folder for normalization_and_conv.png")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    with np.printoptions(precision=4, suppress=True):
        return _run(args)


def _run(args) -> dict:
    result: dict = {}

    # 1. normalization ----------------------------------------------------------------------------
    print(f"X =\n{X_NORM}")
    ln = np.asarray(nn.layer_norm(X_NORM))
    ln_affine = np.asarray(nn.layer_norm(X_NORM, weight=LN_WEIGHT, bias=LN_BIAS))
    mean_r = np.asarray(cnp.mean(X_NORM, axis=-1))
    var_r = np.asarray(cnp.mean(cnp.square(X_NORM - mean_r[:, None]), axis=-1))
    print(f"\nLayerNorm (each row over its 3 features): mean {mean_r}, variance {var_r}")
    print(f"  (x - mean) / sqrt(var + 1e-5) =\n{ln}")
    print(f"  with weight {LN_WEIGHT} and bias {LN_BIAS}:\n{ln_affine}")
    bn, (run_mean, run_var) = nn.batch_norm(X_NORM, np.zeros(3, np.float32), np.ones(3, np.float32))
    bn = np.asarray(bn)
    mean_c = np.asarray(cnp.mean(X_NORM, axis=0))
    var_c = np.asarray(cnp.mean(cnp.square(X_NORM - mean_c), axis=0))
    print(f"\nBatchNorm (training; each feature over the batch of 2): mean {mean_c}, variance {var_c}")
    print(f"  normalized =\n{bn}\n  (a batch of two gives +-sqrt(var / (var + eps)), about +-1, in every column)")
    print(f"  running statistics after one step (momentum 0.1, from 0 and 1): mean {np.asarray(run_mean)}, "
          f"variance {np.asarray(run_var)} (the unbiased variance enters)")
    bn_eval, _ = nn.batch_norm(X_NORM, run_mean, run_var, training=False)
    print(f"  eval mode with those running statistics =\n{np.asarray(bn_eval)}")
    result.update(layer_norm=ln, layer_norm_affine=ln_affine, batch_norm=bn, running_mean=np.asarray(run_mean),
                  running_var=np.asarray(run_var), batch_norm_eval=np.asarray(bn_eval))

    # 2. convolution with padding and stride ------------------------------------------------------
    x_conv = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    w_conv = np.array([[[[1, 0, -1], [2, 0, -2], [1, 0, -1]]],           # Sobel x
                       [[[0, 1, 0], [1, -4, 1], [0, 1, 0]]]], np.float32)   # Laplacian
    b_conv = np.array([0.5, -1.0], np.float32)
    stride, padding = 2, 1
    y_conv = np.asarray(nn.conv2d(x_conv, w_conv, b_conv, stride=stride, padding=padding))
    oh = conv_output_size(5, 3, stride, padding)
    print(f"\nconv2d: x (1, 1, 5, 5) = 0..24, two 3x3 kernels (Sobel-x, Laplacian), bias {b_conv}, "
          f"stride {stride}, padding {padding}")
    print(f"  output size floor((5 + 2*{padding} - 3) / {stride}) + 1 = {oh}; compiler's output shape "
          f"{y_conv.shape}")
    print(f"  output =\n{y_conv}")
    result.update(conv_x=x_conv, conv_w=w_conv, conv_b=b_conv, conv_stride=stride, conv_padding=padding,
                  conv_y=y_conv, conv_out_size=oh)

    # 3. max pooling -------------------------------------------------------------------------------
    grid = np.array([[1, 3, 2, 0],
                     [4, 6, 1, 5],
                     [7, 2, 0, 8],
                     [0, 1, 3, 9]], np.float32).reshape(1, 1, 4, 4)
    pooled = np.asarray(nn.max_pool2d(grid, 2))
    pooled3 = np.asarray(nn.max_pool2d(grid, 3, stride=1))
    print(f"\nmax pooling of\n{grid[0, 0]}\n  2x2 windows, stride 2:\n{pooled[0, 0]}"
          f"\n  3x3 windows, stride 1:\n{pooled3[0, 0]}")
    pool_grad = np.asarray(tj.grad(lambda g: cnp.sum(nn.max_pool2d(g, 2)))(grid))
    print(f"  gradient of sum(2x2 pool): 1 at each window's maximum\n{pool_grad[0, 0]}")
    result.update(pool_input=grid, pooled=pooled, pooled3=pooled3, pool_grad=pool_grad)

    # 4. im2col ------------------------------------------------------------------------------------
    rng = np.random.default_rng(0)
    n, c, h, w, o, k = 2, 3, 6, 6, 4, 3
    x_i = rng.standard_normal((n, c, h, w)).astype(np.float32)
    w_i = rng.standard_normal((o, c, k, k)).astype(np.float32)
    cols = np.asarray(im2col(x_i, k, k, stride=1, padding=1))
    y_i = np.asarray(conv_by_im2col(x_i, w_i, stride=1, padding=1))
    y_direct = np.asarray(nn.conv2d(x_i, w_i, stride=1, padding=1))
    oh_i = conv_output_size(h, k, 1, 1)
    print(f"\nim2col for x {x_i.shape}, w {w_i.shape}, stride 1, padding 1: OH = OW = {oh_i}")
    print(f"  patch matrix {cols.shape} = (N*OH*OW, C*kh*kw) = ({n}*{oh_i}*{oh_i}, {c}*{k}*{k}); "
          f"weights as a matrix ({c * k * k}, {o}); product ({n * oh_i * oh_i}, {o}) -> {y_i.shape}")
    print(f"  max |im2col conv - conv2d| = {np.max(np.abs(y_i - y_direct)):.2e}")
    result.update(im2col_x=x_i, im2col_w=w_i, im2col_shape=cols.shape, im2col_cols=cols, im2col_y=y_i,
                  im2col_direct=y_direct)

    # 5. parameter counts -------------------------------------------------------------------------
    print("\nMLP: Linear(2, 6) -> LayerNorm(6) -> ReLU -> Linear(6, 1)")
    mlp_params = _params({"fc1": {"w": (6, 2), "b": (6,)}, "norm": {"weight": (6,), "bias": (6,)},
                          "fc2": {"w": (1, 6), "b": (1,)}})
    mlp_rows = nn.summary(mlp, mlp_params, np.zeros((4, 2), np.float32))
    print("\nconv net: Conv(1, 4, 3x3, pad 1) -> ReLU -> MaxPool 2 -> Conv(4, 8, 3x3, pad 1) -> ReLU -> "
          "MaxPool 2 -> Linear(32, 10), on 1x8x8 images")
    cnn_params = _params({"conv1": {"w": (4, 1, 3, 3), "b": (4,)}, "conv2": {"w": (8, 4, 3, 3), "b": (8,)},
                          "fc": {"w": (10, 32), "b": (10,)}})
    cnn_rows = nn.summary(convnet, cnn_params, np.zeros((2, 1, 8, 8), np.float32))
    result.update(mlp_summary=mlp_rows, cnn_summary=cnn_rows)

    # picture: the conv input, its two output channels, the pooling ------------------------------
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
    panels = [(x_conv[0, 0], "conv input 5x5"), (y_conv[0, 0], "Sobel-x, stride 2, pad 1"),
              (y_conv[0, 1], "Laplacian, stride 2, pad 1"), (pooled[0, 0], "max pool 2x2 of the 4x4 grid")]
    for ax, (img, title) in zip(axes, panels):
        ax.imshow(img, cmap="viridis")
        for (i, j), v in np.ndenumerate(img):
            ax.text(j, i, f"{v:g}", ha="center", va="center", color="w", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path = os.path.join(args.out, "normalization_and_conv.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"\npicture written to {path}")
    result["plot"] = path
    return result


if __name__ == "__main__":
    main()
