"""GPU benchmark: upstream nnMamba (its own code + mamba-ssm) and ours side by side, same card, one run.

    python benchmarks/gpu.py --upstream .upstream/nnMamba.py [--json out.json] [--sweep] [--no-sliding]

Prints, for nnMambaSeg(in_ch=1, channels=32, blocks=3, number_classes=6) at 1x1x128^3:
forward time of upstream (fp32; bf16 autocast) and of ours (eager engine; fast copy; fast copy
replayed as a CUDA graph; fp32 and bf16) with the ratios, max |difference| of the outputs; the bare
selective scan (batch 4, d_inner 128, d_state 16, L 32768) of mamba-ssm and of our Triton kernel;
sliding-window throughput with 8-fold mirror TTA over a 512x512x300 CT-sized volume and peak memory.
Upstream parts are skipped (and said so) when mamba-ssm or the upstream file is missing.
Random weights with random BatchNorm statistics; inputs are random normal, never zeros.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nnmamba.execution_plan import make_plan  # noqa: E402
from nnmamba.inference.plan_application import apply_plan  # noqa: E402
from nnmamba.inference.cuda_graph import GraphedNetwork  # noqa: E402
from nnmamba.inference.fast_path import prepare_for_inference  # noqa: E402
from nnmamba.networks import build_network, set_scan_backend  # noqa: E402
from nnmamba.ssm import triton_scan  # noqa: E402
from nnmamba.ssm.reference_scan import selective_scan_reference  # noqa: E402
from timing import bench_ms  # noqa: E402

CONFIG = dict(in_ch=1, channels=32, blocks=3, number_classes=6)
SCAN_SHAPE = dict(batch=4, dim=128, state=16, length=32768)
CHANNELS_LAST = True  # the fast copy's layout; --sweep measures both and keeps the faster


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
    return model.eval()


def load_upstream(path: Path):
    spec = importlib.util.spec_from_file_location("upstream_nnmamba", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scan_inputs(batch, dim, state, length, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, device="cuda", generator=g) * scale

    return dict(u=rand(batch, dim, length), delta=rand(batch, dim, length, scale=0.5),
                A=-torch.rand(dim, state, device="cuda", generator=g) * 3 - 0.1,
                B=rand(batch, state, length), C=rand(batch, state, length), D=rand(dim),
                z=rand(batch, dim, length), delta_bias=rand(dim, scale=0.3))


def scan_section(results: dict, mamba_scan, sweep: bool) -> None:
    x = scan_inputs(**SCAN_SHAPE)
    small = scan_inputs(batch=1, dim=8, state=16, length=2048, seed=1)
    expected = selective_scan_reference(**{k: v.double() for k, v in small.items()}, delta_softplus=True)
    got = triton_scan.selective_scan_triton(**small, delta_softplus=True)
    results["triton_vs_reference_rel"] = ((got.double() - expected).abs().max() / expected.abs().max()).item()
    if sweep:
        best = None
        for block in (64, 128, 256):
            for warps in (2, 4, 8):
                triton_scan.BLOCK_L, triton_scan.NUM_WARPS = block, warps
                ms = bench_ms(lambda: triton_scan.selective_scan_triton(**x, delta_softplus=True), 3, 10)
                print(f"  sweep BLOCK_L={block:4d} warps={warps}: {ms:.3f} ms", flush=True)
                results[f"sweep_{block}_{warps}"] = ms
                if best is None or ms < best[0]:
                    best = (ms, block, warps)
        triton_scan.BLOCK_L, triton_scan.NUM_WARPS = best[1], best[2]
        results["sweep_best"] = best
    results["scan_triton_ms"] = bench_ms(lambda: triton_scan.selective_scan_triton(**x, delta_softplus=True))
    if mamba_scan is not None:
        results["scan_mamba_ssm_ms"] = bench_ms(lambda: mamba_scan(**x, delta_softplus=True))
        ours = triton_scan.selective_scan_triton(**x, delta_softplus=True)
        theirs = mamba_scan(**x, delta_softplus=True)
        results["scan_max_abs_diff"] = (ours - theirs).abs().max().item()
        results["scan_max_abs"] = theirs.abs().max().item()
        results["scan_ratio_triton_over_mamba_ssm"] = results["scan_triton_ms"] / results["scan_mamba_ssm_ms"]


def network_sweep(results: dict) -> None:
    """Graphed bf16 forward at 1x1x128^3 for each MICCSS scan config and layout; keeps the fastest."""
    global CHANNELS_LAST
    torch.manual_seed(0)
    net = randomise(build_network("nnMambaSeg", **CONFIG)).cuda()
    x = torch.randn(1, 1, 128, 128, 128, device="cuda")
    best = None
    for layout in (True, False):
        for block in (64, 128, 256):
            for warps in (1, 2, 4):
                triton_scan.MICCSS_BLOCK_L, triton_scan.MICCSS_NUM_WARPS = block, warps
                graphed = GraphedNetwork(prepare_for_inference(net, torch.bfloat16, channels_last=layout),
                                         copy_output=False)
                with torch.no_grad():
                    ms = bench_ms(lambda: graphed(x), 3, 20)
                graphed.release()
                key = f"netsweep_cl{int(layout)}_{block}_{warps}"
                results[key] = ms
                print(f"  {key}: {ms:.3f} ms", flush=True)
                if best is None or ms < best[0]:
                    best = (ms, layout, block, warps)
    _, CHANNELS_LAST, triton_scan.MICCSS_BLOCK_L, triton_scan.MICCSS_NUM_WARPS = best
    results["netsweep_best"] = best


def network_section(results: dict, upstream_module, batch_sizes=(1, 2)) -> None:
    torch.manual_seed(0)
    ours = randomise(build_network("nnMambaSeg", **CONFIG)).cuda()
    upstream = None
    if upstream_module is not None:
        upstream = upstream_module.nnMambaSeg(**CONFIG).cuda().eval()
        upstream.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(1, 1, 128, 128, 128, device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    outputs = {}
    with torch.no_grad():
        if upstream is not None:
            outputs["upstream_fp32"] = upstream(x).float()
            results["upstream_fp32_ms"] = bench_ms(lambda: upstream(x))
            with torch.autocast("cuda", dtype=torch.bfloat16):
                outputs["upstream_bf16"] = upstream(x).float()
                results["upstream_bf16_ms"] = bench_ms(lambda: upstream(x))
                x2 = x.repeat(2, 1, 1, 1, 1)
                results["upstream_bf16_b2_ms"] = bench_ms(lambda: upstream(x2))
        # the eager engine: an inference plan with every fused form off (its scan backend is auto's)
        eager_plan = make_plan(ours, x.device, torch.float32, fold_batchnorm=False, channels_last=False,
                               cuda_graphs=False)
        eager = apply_plan(ours, eager_plan)
        results["plan_eager"] = eager_plan.as_dict()
        results["ours_eager_backend"] = eager_plan.scan_backend
        results["ours_eager_fp32_ms"] = bench_ms(lambda: eager(x), 3, 10)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            plan = make_plan(ours, x.device, dtype, channels_last=CHANNELS_LAST)
            results[f"plan_{name}"] = plan.as_dict()
            if not plan.fused_miccss:
                print(f"the {name} inference plan does not fuse MICCSS: {dict(plan.reasons)['fused_miccss']}")
            # exactly what a user's plan runs (graph output copied), beside the parts timed below
            planned = apply_plan(ours, plan)
            outputs[f"ours_plan_{name}"] = planned(x).float()
            results[f"ours_plan_{name}_ms"] = bench_ms(lambda: planned(x))
            del planned
            fast = prepare_for_inference(ours, dtype, channels_last=plan.channels_last)
            outputs[f"ours_fast_{name}"] = fast(x).float()
            results[f"ours_fast_{name}_ms"] = bench_ms(lambda: fast(x))
            for b in batch_sizes:
                xb = x.repeat(b, 1, 1, 1, 1)
                graphed = GraphedNetwork(fast, copy_output=False)
                out = graphed(xb)
                if b == 1:
                    outputs[f"ours_graph_{name}"] = out.float().clone()
                results[f"ours_graph_{name}_b{b}_ms"] = bench_ms(lambda: graphed(xb), 5, 50)
                graphed.release()
            del fast
    with torch.no_grad():
        exact = copy.deepcopy(ours).double()
        set_scan_backend(exact, "torch")
        outputs["eager_fp64"] = exact(x.double()).float()
        del exact
    for ref_name in ("upstream_fp32", "eager_fp64"):
        if ref_name not in outputs:
            continue
        ref = outputs[ref_name]
        results[f"ref_max_abs_{ref_name}"] = ref.abs().max().item()
        for name, out in outputs.items():
            if name != ref_name and not (ref_name == "upstream_fp32" and name == "eager_fp64"):
                results[f"diff_{name}_vs_{ref_name}"] = (out - ref).abs().max().item()
                results[f"argmax_agree_{name}_vs_{ref_name}"] = (out.argmax(1) == ref.argmax(1)).float().mean().item()
    if "upstream_fp32_ms" in results:
        for name in ("fp32", "bf16"):
            results[f"speedup_{name}"] = results[f"upstream_{name}_ms"] / results[f"ours_graph_{name}_b1_ms"]
        results["speedup_bf16_b2"] = results["upstream_bf16_b2_ms"] / results["ours_graph_bf16_b2_ms"]


def sliding_section(results: dict, tile_batch: int = 2) -> None:
    from nnmamba.inference.sliding_window import sliding_window
    from nnmamba.inference.tiling import tile_slices

    torch.manual_seed(0)
    net = randomise(build_network("nnMambaSeg", **CONFIG)).cuda()
    graphed = GraphedNetwork(prepare_for_inference(net, torch.bfloat16, channels_last=CHANNELS_LAST),
                             copy_output=False)
    volume = torch.randn(1, 300, 512, 512, device="cuda")
    patch = (128, 128, 128)
    tiles = len(tile_slices(tuple(volume.shape[1:]), patch, 0.5))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    for tta, axes in (("tta8", (0, 1, 2)), ("notta", ())):
        graphed(torch.randn(tile_batch, 1, *patch, device="cuda"))  # capture outside the timing
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = sliding_window(graphed, volume, patch, CONFIG["number_classes"], overlap=0.5,
                             tile_batch=tile_batch, device=torch.device("cuda"),
                             stitch_device=torch.device("cuda"), mirror_axes=axes)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        forwards = tiles * (8 if axes else 1)
        results[f"sliding_{tta}_s"] = seconds
        results[f"sliding_{tta}_tile_forwards_per_s"] = forwards / seconds
        del out
    results["sliding_tiles"] = tiles
    results["sliding_peak_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30


def profile_section(results: dict) -> None:
    """Layout / cudnn.benchmark variants of the graphed fast copy, then the top kernels of one forward."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    net = randomise(build_network("nnMambaSeg", **CONFIG)).cuda()
    x = torch.randn(1, 1, 128, 128, 128, device="cuda")
    for bench_flag in (False, True):
        torch.backends.cudnn.benchmark = bench_flag
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            for layout in (True, False):
                graphed = GraphedNetwork(prepare_for_inference(net, dtype, channels_last=layout), copy_output=False)
                with torch.no_grad():
                    key = f"variant_{name}_cl{int(layout)}_bench{int(bench_flag)}_ms"
                    results[key] = bench_ms(lambda: graphed(x), 5, 30)
                print(f"  {key}: {results[key]:.3f}", flush=True)
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        fast = prepare_for_inference(net, dtype)
        with torch.no_grad():
            for _ in range(3):
                fast(x)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                fast(x)
                torch.cuda.synchronize()
        print(f"--- top kernels, fast copy {name} (cudnn.benchmark on)")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=22, max_name_column_width=90))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", type=Path, default=REPO / ".upstream" / "nnMamba.py")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--sweep", action="store_true", help="try Triton block sizes / warps / layouts first")
    parser.add_argument("--sweep-only", action="store_true", help="stop after the sweeps")
    parser.add_argument("--config-from", type=Path, help="use the 'config' of an earlier --json output")
    parser.add_argument("--no-sliding", action="store_true")
    parser.add_argument("--no-network", action="store_true")
    parser.add_argument("--profile", action="store_true", help="layout variants and a kernel profile only")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py needs a CUDA device", file=sys.stderr)
        return 2
    import triton

    results = {"card": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    mamba_scan, upstream_module = None, None
    try:
        import mamba_ssm
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as mamba_scan
        results["mamba_ssm"] = mamba_ssm.__version__
        if args.upstream.is_file():
            upstream_module = load_upstream(args.upstream)
        else:
            print(f"upstream file {args.upstream} not found: upstream network skipped")
    except ImportError as e:
        print(f"mamba-ssm does not import ({e}): upstream parts skipped")
    if args.profile:
        profile_section(results)
        return 0
    if args.config_from is not None:
        global CHANNELS_LAST
        config = json.loads(args.config_from.read_text())["config"]
        triton_scan.BLOCK_L, triton_scan.NUM_WARPS = config["scan"]
        triton_scan.MICCSS_BLOCK_L, triton_scan.MICCSS_NUM_WARPS = config["miccss"]
        CHANNELS_LAST = config["channels_last"]
    scan_section(results, mamba_scan, args.sweep or args.sweep_only)
    if args.sweep or args.sweep_only:
        network_sweep(results)
    results["config"] = dict(scan=(triton_scan.BLOCK_L, triton_scan.NUM_WARPS), channels_last=CHANNELS_LAST,
                             miccss=(triton_scan.MICCSS_BLOCK_L, triton_scan.MICCSS_NUM_WARPS))
    print(json.dumps(results, indent=1), flush=True)
    if args.sweep_only:
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        return 0
    if not args.no_network:
        network_section(results, upstream_module)
        print(json.dumps(results, indent=1), flush=True)
    if not args.no_sliding:
        sliding_section(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print_table(results)
    return 0


def print_table(r: dict) -> None:
    def get(key, fmt="{:.3f}"):
        return fmt.format(r[key]) if key in r else "-"

    print(f"\nconfig (scan BLOCK_L, warps; layout; MICCSS BLOCK_L, warps): {r.get('config')}")
    print(f"card: {r['card']}  torch {r['torch']}  triton {r['triton']}  mamba-ssm {r.get('mamba_ssm', '-')}")
    print(f"selective scan {SCAN_SHAPE}: triton {get('scan_triton_ms')} ms, mamba-ssm "
          f"{get('scan_mamba_ssm_ms')} ms, ratio {get('scan_ratio_triton_over_mamba_ssm', '{:.2f}')}x, "
          f"max|diff| {get('scan_max_abs_diff', '{:.2e}')} (max|y| {get('scan_max_abs', '{:.1f}')})")
    print("nnMambaSeg(1, 32, 3, 6) at 1x1x128^3, ms per forward:")
    for key in ("upstream_fp32_ms", "upstream_bf16_ms", "upstream_bf16_b2_ms", "ours_eager_fp32_ms",
                "ours_fast_fp32_ms", "ours_fast_bf16_ms", "ours_graph_fp32_b1_ms", "ours_graph_bf16_b1_ms",
                "ours_graph_fp32_b2_ms", "ours_graph_bf16_b2_ms"):
        print(f"  {key:26s} {get(key)}")
    print(f"speedup over upstream: fp32 {get('speedup_fp32', '{:.2f}')}x, bf16 {get('speedup_bf16', '{:.2f}')}x, "
          f"bf16 batch 2 {get('speedup_bf16_b2', '{:.2f}')}x")
    for key in sorted(k for k in r if k.startswith("diff_") or k.startswith("argmax_")):
        print(f"  {key:30s} {r[key]}")
    if "sliding_tiles" in r:
        print(f"sliding window 512x512x300, patch 128^3, overlap 0.5, {r['sliding_tiles']} tiles, bf16 graph: "
              f"TTA x8 {get('sliding_tta8_s', '{:.1f}')} s ({get('sliding_tta8_tile_forwards_per_s', '{:.0f}')} "
              f"tile forwards/s), no TTA {get('sliding_notta_s', '{:.1f}')} s, peak "
              f"{get('sliding_peak_gib', '{:.1f}')} GiB")


if __name__ == "__main__":
    sys.exit(main())
