"""The execution planner: backends chosen by declared capabilities, impossible plans refused with the
fix named, plans logged, and a planned training step that trains every Mamba parameter."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
import torch

from nnmamba import execution_plan
from nnmamba.errors import BackendUnavailableError, PlanError
from nnmamba.execution_plan import make_plan, network_facts, plan_from_declarations
from nnmamba.inference.plan_application import apply_plan
from nnmamba.networks import build_network
from nnmamba.ssm import backends
from nnmamba.ssm.backend_choice import choose_scan_backend
from nnmamba.ssm.mamba import Mamba
from nnmamba.ssm.reference_scan import selective_scan_reference

CUDA = torch.device("cuda", 0)
SMALL_SEG = dict(in_ch=1, channels=16, blocks=2, number_classes=3)


def selective_scan_without_grad(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The reference scan with autograd off: a real forward-only backend, like triton before its backward."""
    with torch.no_grad():
        return selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


@pytest.fixture
def forward_only_backend(monkeypatch):
    """Registers 'forward_only' (fastest of all, no gradients) for one test; removed afterwards."""
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    monkeypatch.setitem(backends._REGISTRY, "forward_only", None)  # monkeypatch removes the key again
    backends.register_backend("forward_only", selective_scan_without_grad, lambda device: True,
                              supports_grad=lambda: False, speed_rank=1)
    return "forward_only"


def cuda_without_mamba_ssm(triton_trains: bool = False, mamba_ssm: bool = False, causal_conv1d: bool = False):
    """The registry's own declarations, as a CUDA machine would give them (this one has no GPU)."""
    declared = []
    for d in backends.declarations("cpu"):
        if d.name == "mamba_ssm":
            d = dataclasses.replace(d, available=mamba_ssm, why_not="" if mamba_ssm else
                                    "mamba-ssm does not import (ModuleNotFoundError); fix: pip install nnmamba[cuda]",
                                    fused_inner=causal_conv1d, fused_inner_why_not="" if causal_conv1d else
                                    "causal-conv1d does not import; fix: pip install causal-conv1d")
        elif d.name == "triton":
            d = dataclasses.replace(d, available=True, why_not="", supports_grad=triton_trains)
        declared.append(d)
    return declared


# ---- declared capabilities -------------------------------------------------------------------------

def test_backends_declare_devices_gradients_and_fused_forms():
    torch_backend, reference = backends.get_backend("torch"), backends.get_backend("reference")
    assert torch_backend.supports_grad and reference.supports_grad
    assert torch.float64 in torch_backend.dtypes and torch.bfloat16 in torch_backend.dtypes
    assert torch_backend.device_types is None and reference.device_types is None  # any device
    mamba_ssm = backends.get_backend("mamba_ssm")
    assert mamba_ssm.device_types == ("cuda",) and backends.get_backend("triton").device_types == ("cuda",)
    assert mamba_ssm.supports_grad and mamba_ssm.fused_inner is not None
    assert backends.get_backend("triton").fused_inner is None
    declared = {d.name: d for d in backends.declarations("cpu")}
    assert not declared["mamba_ssm"].available and "CUDA devices only" in declared["mamba_ssm"].why_not
    assert declared["torch"].available and declared["torch"].fused_inner is None


def test_triton_declares_gradients_exactly_when_its_module_says_it_has_a_backward(monkeypatch):
    from nnmamba.ssm import triton_scan

    monkeypatch.setattr(triton_scan, "SUPPORTS_BACKWARD", False, raising=False)
    assert not backends.get_backend("triton").supports_grad
    monkeypatch.setattr(triton_scan, "SUPPORTS_BACKWARD", True, raising=False)
    assert backends.get_backend("triton").supports_grad


# ---- the pure choice ---------------------------------------------------------------------------------

def test_auto_in_training_on_cuda_without_mamba_ssm_picks_a_backend_that_trains():
    name, why = choose_scan_backend(cuda_without_mamba_ssm(), CUDA, torch.bfloat16, "training")
    assert name == "torch"
    assert backends.get_backend(name).supports_grad
    assert "triton (it is forward-only" in why and "mamba_ssm (mamba-ssm does not import" in why


def test_auto_in_inference_on_cuda_takes_the_fastest_even_if_forward_only():
    assert choose_scan_backend(cuda_without_mamba_ssm(), CUDA, torch.bfloat16, "inference")[0] == "triton"


def test_auto_in_training_takes_triton_once_it_has_a_backward_and_mamba_ssm_when_installed():
    assert choose_scan_backend(cuda_without_mamba_ssm(triton_trains=True), CUDA, torch.bfloat16,
                               "training")[0] == "triton"
    assert choose_scan_backend(cuda_without_mamba_ssm(triton_trains=True, mamba_ssm=True), CUDA,
                               torch.bfloat16, "training")[0] == "mamba_ssm"


def test_asking_for_a_forward_only_backend_to_train_names_the_fix():
    with pytest.raises(PlanError, match=r"'triton' \(asked for\) cannot train on cuda:0: it is forward-only.*"
                                        r"scan_backend='torch'.*make mamba_ssm available.*pip install nnmamba\[cuda\]"):
        choose_scan_backend(cuda_without_mamba_ssm(), CUDA, torch.bfloat16, "training", "triton")


def test_a_backend_without_the_dtype_is_refused_and_auto_passes_over_it():
    with pytest.raises(PlanError, match="cannot compute in float64"):
        choose_scan_backend(cuda_without_mamba_ssm(), CUDA, torch.float64, "inference", "triton")
    assert choose_scan_backend(cuda_without_mamba_ssm(), CUDA, torch.float64, "inference")[0] == "torch"


def test_whole_cuda_inference_plan_fuses_miccss_with_graphs_and_channels_last():
    facts = network_facts("nnMambaSeg")
    assert (facts.mamba_blocks, facts.miccss_layers) == (3, 3)
    plan = plan_from_declarations(facts, cuda_without_mamba_ssm(mamba_ssm=True, causal_conv1d=True), CUDA,
                                  torch.bfloat16, "inference")
    assert plan.scan_backend == "triton"  # what the fused MICCSS layers scan in, not mamba_ssm
    assert plan.fused_miccss and plan.fold_batchnorm and plan.cuda_graphs and plan.channels_last


def test_cuda_training_with_mamba_ssm_uses_its_fused_inner_function_and_says_why_when_it_cannot():
    facts = network_facts("nnMambaSeg")
    fused = plan_from_declarations(facts, cuda_without_mamba_ssm(mamba_ssm=True, causal_conv1d=True), CUDA,
                                   torch.bfloat16, "training")
    assert (fused.scan_backend, fused.fused_inner, fused.fused_miccss, fused.cuda_graphs) == ("mamba_ssm", True,
                                                                                            False, False)
    unfused = plan_from_declarations(facts, cuda_without_mamba_ssm(mamba_ssm=True), CUDA, torch.bfloat16,
                                     "training")
    assert not unfused.fused_inner
    assert "causal-conv1d does not import" in dict(unfused.reasons)["fused_inner"]
    with pytest.raises(PlanError, match="fused inner function of mamba_ssm is not usable: causal-conv1d"):
        plan_from_declarations(facts, cuda_without_mamba_ssm(mamba_ssm=True), CUDA, torch.bfloat16, "training",
                               "mamba_ssm", overrides={"fused_inner": True})


# ---- make_plan on this machine -----------------------------------------------------------------------

def test_the_planner_refuses_a_forward_only_backend_for_training_with_a_clear_message(forward_only_backend):
    net = build_network("nnMambaSeg", **SMALL_SEG)
    with pytest.raises(PlanError, match=r"'forward_only' \(asked for\) cannot train on cpu: it is forward-only, "
                                        r"its result carries no gradients.*use scan_backend='auto' \(the fastest "
                                        r"backend that trains here: torch\)") as error:
        make_plan(net, "cpu", mode="training", scan_backend="forward_only")
    assert isinstance(error.value, BackendUnavailableError)
    assert make_plan(net, "cpu", mode="inference", scan_backend="forward_only").scan_backend == "forward_only"
    assert make_plan(net, "cpu", mode="training").scan_backend == "torch"  # auto passes over it


def test_a_block_without_a_plan_never_trains_on_a_forward_only_backend(forward_only_backend):
    block = Mamba(d_model=8)
    block(torch.randn(1, 5, 8)).sum().backward()
    assert block.x_proj.weight.grad is not None
    with torch.no_grad():
        block(torch.randn(1, 5, 8))
    assert block._resolved[("cpu", torch.float32, "training")][0] == "torch"
    assert block._resolved[("cpu", torch.float32, "inference")][0] == "forward_only"


def test_an_applied_inference_plan_never_serves_a_training_forward(forward_only_backend):
    net = build_network("nnMambaSeg", **SMALL_SEG)
    apply_plan(net, make_plan(net, "cpu", mode="inference", scan_backend="forward_only"))
    block = net.layer1[1].mamba_layer.mamba
    assert block.decision("cpu", mode="inference")[0] == "forward_only"
    net.train()
    x = torch.randn(1, 1, 32, 32, 32)
    net(x).sum().backward()
    assert block.x_proj.weight.grad is not None
    assert block.decision("cpu", mode="training")[0] == "torch"


def test_the_environment_variable_cannot_force_a_forward_only_backend_into_training(forward_only_backend,
                                                                                   monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "forward_only")
    with pytest.raises(PlanError, match=f"set by {backends.ENV_VAR}.*forward-only"):
        make_plan("nnMambaSeg", "cpu", mode="training")


@pytest.mark.parametrize("overrides,message", [
    ({"cuda_graphs": True}, "CUDA graphs need a CUDA device"),
    ({"fused_miccss": True}, "fused_miccss=True is impossible here: needs the Triton scans"),
    ({"fused_inner": True}, "'torch' offers no fused inner function"),
])
def test_an_impossible_override_is_refused_naming_the_fix(overrides, message):
    with pytest.raises(PlanError, match=message):
        make_plan("nnMambaSeg", "cpu", **overrides)


def test_inference_only_forms_are_refused_in_training_and_unknown_overrides_are_bad_arguments():
    with pytest.raises(PlanError, match="fold_batchnorm=True in training"):
        make_plan("nnMambaSeg", "cpu", mode="training", fold_batchnorm=True)
    with pytest.raises(PlanError, match="cuda_graphs=True in training"):
        make_plan("nnMambaSeg", "cpu", mode="training", cuda_graphs=True)
    with pytest.raises(ValueError, match="cannot override conv_path"):
        make_plan("nnMambaSeg", "cpu", conv_path="native")
    with pytest.raises(ValueError, match="mode must be 'inference' or 'training'"):
        make_plan("nnMambaSeg", "cpu", mode="eval")


def test_the_plan_is_logged_once_when_made_and_is_json_able(caplog):
    with caplog.at_level(logging.INFO, logger="nnmamba.execution_plan"):
        plan = make_plan({"network": "nnMambaSeg", "hyperparameters": SMALL_SEG}, "cpu", mode="training")
    lines = [r.getMessage() for r in caplog.records if r.name == "nnmamba.execution_plan"]
    assert len(lines) == 1 and lines[0] == plan.describe()
    assert lines[0].startswith("execution plan: nnMambaSeg on cpu, float32, training\n  scan_backend    torch")
    data = json.loads(json.dumps(plan.as_dict()))
    assert data["scan_backend"] == "torch" and data["conv_path"] in ("onednn", "native")
    assert [r[0] for r in data["reasons"]] == ["scan_backend", "fused_inner", "fused_miccss", "fold_batchnorm",
                                               "channels_last", "cuda_graphs", "conv_path"]


def test_cpu_inference_plan_folds_batchnorm_and_the_folded_copy_gives_the_same_scores():
    torch.manual_seed(0)
    net = build_network("nnMambaSeg", **SMALL_SEG)
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so folding does something
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.75, 1.25)
    net.eval()
    plan = make_plan(net, "cpu")
    assert plan.fold_batchnorm and not plan.fused_miccss and not plan.cuda_graphs
    fast = apply_plan(net, plan)
    assert fast is not net and not any(isinstance(m, torch.nn.BatchNorm3d) for m in fast.modules())
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        assert torch.allclose(fast(x), net(x), atol=1e-5)


def test_a_plan_for_another_network_is_refused():
    plan = make_plan("nnMambaEncoder", "cpu", mode="training")
    with pytest.raises(ValueError, match="made for nnMambaEncoder, got a nnMambaSeg"):
        apply_plan(build_network("nnMambaSeg", **SMALL_SEG), plan)


def mamba_parameters(model):
    return {f"{name}.{p_name}": p for name, m in model.named_modules() if isinstance(m, Mamba)
            for p_name, p in m.named_parameters()}


def one_planned_training_step(device, scan_backend="auto"):
    torch.manual_seed(0)
    net = build_network("nnMambaSeg", **SMALL_SEG).to(device)
    plan = make_plan(net, device, mode="training", scan_backend=scan_backend)
    net = apply_plan(net, plan)
    before = {k: p.detach().clone() for k, p in mamba_parameters(net).items()}
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(2, 1, 32, 32, 32, device=device)
    target = torch.randint(0, SMALL_SEG["number_classes"], (2, 32, 32, 32), device=device)
    torch.nn.functional.cross_entropy(net(x), target).backward()
    optimizer.step()
    return plan, net, before


def test_one_training_step_changes_every_parameter_of_every_mamba_block():
    plan, net, before = one_planned_training_step("cpu", "torch")
    after = mamba_parameters(net)
    assert len(after) == 3 * 9  # three MICCSS layers, nine parameters each
    unchanged = [k for k, p in after.items() if torch.equal(p.detach(), before[k])]
    assert unchanged == []


# ---- CUDA ---------------------------------------------------------------------------------------------

@pytest.mark.gpu
def test_auto_training_on_cuda_trains_every_mamba_parameter():
    plan, net, before = one_planned_training_step("cuda")
    assert backends.get_backend(plan.scan_backend).supports_grad
    assert [k for k, p in mamba_parameters(net).items() if torch.equal(p.detach(), before[k])] == []


@pytest.mark.gpu
def test_triton_trains_once_it_declares_a_backward_and_is_refused_for_training_before():
    if not backends.get_backend("triton").supports_grad:
        with pytest.raises(PlanError, match="forward-only"):
            make_plan("nnMambaSeg", "cuda", mode="training", scan_backend="triton")
        return
    plan, net, before = one_planned_training_step("cuda", "triton")
    for name, p in mamba_parameters(net).items():
        assert p.grad is not None, name
    assert net.layer1[1].mamba_layer.mamba.x_proj.weight.grad is not None
    assert [k for k, p in mamba_parameters(net).items() if torch.equal(p.detach(), before[k])] == []


@pytest.mark.gpu
def test_cuda_inference_plan_runs_the_fast_copy_close_to_the_eager_network():
    torch.manual_seed(0)
    net = build_network("nnMambaSeg", **SMALL_SEG).cuda().eval()
    plan = make_plan(net, "cuda", torch.float32)
    fast = apply_plan(net, plan)
    x = torch.randn(1, 1, 32, 32, 32, device="cuda")
    with torch.no_grad():
        want = net(x)
        got = fast(x)
    assert execution_plan.MICCSS_SCAN_BACKEND == plan.scan_backend and plan.fused_miccss
    assert (got.float() - want).abs().max().item() < 1e-3 * want.abs().max().item() + 1e-5


def test_channels_last_trains_on_cuda_by_default_off_on_cpu_and_each_override_wins():
    default = make_plan("nnMambaSeg", "cpu", mode="training")
    assert not default.channels_last and "CPU" in dict(default.reasons)["channels_last"]
    forced = make_plan("nnMambaSeg", "cpu", mode="training", channels_last=True)
    assert forced.channels_last and "override" in dict(forced.reasons)["channels_last"]
    cuda = plan_from_declarations(network_facts("nnMambaSeg"), cuda_without_mamba_ssm(triton_trains=True), CUDA,
                                  torch.bfloat16, "training")
    assert cuda.channels_last and not cuda.cuda_graphs and not cuda.fused_miccss
    assert "measured" in dict(cuda.reasons)["channels_last"]
    off = plan_from_declarations(network_facts("nnMambaSeg"), cuda_without_mamba_ssm(triton_trains=True), CUDA,
                                 torch.bfloat16, "training", overrides={"channels_last": False})
    assert not off.channels_last and "override" in dict(off.reasons)["channels_last"]


def test_an_applied_channels_last_training_plan_puts_the_convolutions_in_channels_last():
    from nnmamba.execution_plan import to_plan_layout
    from nnmamba.networks import build_network

    net = build_network("nnMambaSeg", in_ch=1, channels=4, blocks=2, number_classes=2, scan_backend="torch")
    plan = make_plan(net, "cpu", mode="training", channels_last=True)
    assert apply_plan(net, plan) is net
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv3d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last_3d) for c in convs)
    batch = to_plan_layout(torch.randn(1, 1, 4, 4, 4), plan)
    assert batch.is_contiguous(memory_format=torch.channels_last_3d)
