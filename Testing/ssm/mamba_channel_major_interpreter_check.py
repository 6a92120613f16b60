"""The Mamba block's channel-major path on the `triton` kernels, on CPU under Triton's interpreter,
against the token-major block on the torch scan: max relative error of the output and of every
gradient, printed as JSON. Run in a child process by test_mamba_channel_major.py:

    TRITON_INTERPRET=1 python Testing/ssm/mamba_channel_major_interpreter_check.py
"""

from __future__ import annotations

import copy
import json

import torch

from triton_interpreter_checks import work_around_index_of_numpy_2_4


def relative_errors() -> dict:
    from nnmamba.ssm.mamba import Mamba, channel_linear

    torch.manual_seed(0)
    block = Mamba(d_model=4, d_state=4, scan_backend="torch")
    kernel_block = copy.deepcopy(block)
    x = torch.randn(2, 21, 4)
    weights = torch.linspace(-1, 1, x.numel()).view_as(x)
    (w_x, _), (w_z, _) = kernel_block.in_proj_halves()

    def on_triton(t):
        x, z = channel_linear(w_x, t.transpose(1, 2)), channel_linear(w_z, t.transpose(1, 2))
        return channel_linear(kernel_block.out_proj.weight, kernel_block.inner_channels(x, z, "triton")).transpose(1, 2)

    grads = {}
    for name, run in (("torch", lambda t: block(t)), ("triton", on_triton)):
        t = x.clone().requires_grad_(True)
        out = run(t)
        (out * weights).sum().backward()
        owner = block if name == "torch" else kernel_block
        grads[name] = {"out": out.detach(), "x": t.grad, **{k: p.grad for k, p in owner.named_parameters()}}
    return {k: float((grads["triton"][k] - v).abs().max() / v.abs().max()) for k, v in grads["torch"].items()}


def main() -> None:
    work_around_index_of_numpy_2_4()
    torch.set_num_threads(1)
    from nnmamba.ssm import triton_scan

    if not triton_scan.interpreting():
        raise SystemExit("the triton scan kernels were not decorated for the interpreter")
    print(json.dumps(relative_errors()))


if __name__ == "__main__":
    main()
