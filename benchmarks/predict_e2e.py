"""End to end: `nnmamba predict` on a CT-sized volume against the same pipeline run with upstream nnMamba.

    python benchmarks/predict_e2e.py --upstream .upstream/nnMamba.py [--tta] [--json out.json]
    python benchmarks/predict_e2e.py --device cpu --shape 40 64 64 --patch 32   # a check of the script

One run, one GPU. A 512 x 512 x 300 int16 CT-like volume (0.75 x 0.75 x 1.0 mm) is written to an
.nrrd file, and a temporary model card is written beside it: nnMambaSeg(in_ch=1, channels=32,
blocks=3, number_classes=6), random weights with random BatchNorm statistics, 1 mm working grid,
128^3 tiles. Then, file read to .seg.nrrd written, each twice (the first run of a process pays the
Triton compilation, the probe check and the graph captures; the second is what a worker serving
jobs pays):
- ours: `nnmamba predict` itself (in this process, through `nnmamba.cli.main`), at the default
  precision (bf16 on a card that has it) and at fp32;
- upstream: the same steps on the CPU where the engine did them before (SimpleITK resampling in,
  numpy normalisation, softmax and SimpleITK resampling of every class back, arg-max) around upstream
  nnMambaSeg (its own file + mamba-ssm) run eagerly in fp32, with the same tiles, overlap and TTA.
Prints total and per-stage seconds (read, resample, network, postprocess, write), the ratio, the
post-processing share of the total and the label agreement; then the 1 x 1 x 128^3 forward of
upstream and of our planned copy (fp32 and bf16) through `benchmarks/gpu.py`'s `network_section`,
with PyTorch's default backend flags and with the ones `nnmamba predict` sets.

Needs SimpleITK (file read and .seg.nrrd write) and, for the upstream side, mamba-ssm and the
upstream file; what is missing is said and skipped, never replaced.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

SHAPE_KJI = (300, 512, 512)
SPACING = (0.75, 0.75, 1.0)
CONFIG = dict(in_ch=1, channels=32, blocks=3, number_classes=6)
STAGES = ("read", "resample", "network", "postprocess", "write")
CARD = {
    "schema_version": 1, "name": "bench-ct-seg", "task": "segmentation", "network": "nnMambaSeg",
    "description": "benchmark card: random weights", "hyperparameters": CONFIG,
    "weights": "set-by-save_model", "trained": False,
    "input": {"channels": [{"name": "CT", "modality": "CT"}], "spacing_mm": [1.0, 1.0, 1.0],
              "orientation": "LPS", "patch_size": [128, 128, 128],
              "normalization": {"method": "ct", "clip": [-1000.0, 1500.0], "mean": 0.0, "std": 400.0}},
    "inference": {"mirror_axes": [0, 1, 2]},
    "labels": [{"value": v, "name": f"structure {v}", "color": [0.2 * v, 0.5, 1.0 - 0.2 * v]} for v in range(1, 6)],
    "training": None, "accuracy": None,
}


def need_simpleitk() -> bool:
    try:
        import SimpleITK  # noqa: F401
    except ImportError:
        print("benchmarks/predict_e2e.py needs SimpleITK (it reads the .nrrd and writes the .seg.nrrd, as "
              "`nnmamba predict` does): carry a SimpleITK wheel for this Python and pip install it, e.g. "
              "`python3 -m pip install --no-index --target /tmp/site .whl/SimpleITK-*.whl`", file=sys.stderr)
        return False
    return True


def write_ct_volume(path: Path, shape_kji=SHAPE_KJI) -> None:
    """An int16 CT-like volume: air, a body ellipse of soft tissue with noise, a brighter 'spine'."""
    import numpy as np
    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    k, j, i = np.ogrid[:shape_kji[0], :shape_kji[1], :shape_kji[2]]
    cj, ci = shape_kji[1] / 2, shape_kji[2] / 2
    body = ((j - cj) / (0.39 * shape_kji[1])) ** 2 + ((i - ci) / (0.47 * shape_kji[2])) ** 2 < 1.0
    spine = ((j - 1.48 * cj) / (0.05 * shape_kji[1])) ** 2 + ((i - ci) / (0.05 * shape_kji[2])) ** 2 < 1.0
    array = np.full(shape_kji, -1000, dtype=np.int16)
    array[np.broadcast_to(body, shape_kji)] = 40
    array[np.broadcast_to(spine, shape_kji)] = 700
    array += rng.normal(0, 20, size=shape_kji).astype(np.int16)
    array += (5 * np.sin(k / 7.0)).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetOrigin((-192.0, -192.0, -150.0))
    sitk.WriteImage(image, str(path), useCompression=False)


def write_card(folder: Path):
    import torch

    from gpu import randomise
    from nnmamba.model_card import validate_card_dict
    from nnmamba.models import build_for_card, save_model

    torch.manual_seed(0)
    network = randomise(build_for_card(validate_card_dict(copy.deepcopy(CARD)), scan_backend="torch"))
    return save_model(copy.deepcopy(CARD), network, folder), network


def run_ours(volume_path: Path, card_path: Path, out: Path, precision: str, tta: bool, device: str) -> dict:
    """`nnmamba predict` itself; returns total seconds and the stage seconds it printed."""
    from nnmamba.cli import main

    argv = ["predict", "-i", str(volume_path), "-o", str(out), "--model", f"segmentation={card_path}",
            "--tasks", "segmentation", "--no-summary", "--overwrite", "--precision", precision, "--device", device]
    if tta:
        argv.append("--tta")
    printed = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        code = main(argv)
    total = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"nnmamba predict exited with {code}: {printed.getvalue()}")
    stages = {name: float(s) for name, s in re.findall(r"(\w+) ([\d.]+) s", printed.getvalue().split("(", 1)[1])}
    return {"total_s": total, **{f"{k}_s": v for k, v in stages.items()}}


def run_upstream(volume_path: Path, card, upstream_net, out: Path, tta: bool, device: str = "cuda") -> dict:
    """The same pipeline with the CPU pre/post-processing of before and upstream's eager network."""
    import numpy as np
    import torch

    from nnmamba.inference.normalization import normalize
    from nnmamba.inference.resampling import probabilities_to_labels, resample_channels, working_grid
    from nnmamba.inference.sliding_window import sliding_window
    from nnmamba.io import read_volume, write_results
    from nnmamba.results import SegmentationResult

    cuda = torch.device(device)
    times = {}
    start = last = time.perf_counter()

    def stage(name):
        nonlocal last
        if cuda.type == "cuda":
            torch.cuda.synchronize(cuda)
        now = time.perf_counter()
        times[f"{name}_s"] = now - last
        last = now

    volume = read_volume([volume_path])
    stage("read")
    geometry, shape = working_grid(volume.geometry, volume.shape_kji, card.spacing_mm, card.orientation)
    image = torch.from_numpy(normalize(resample_channels(volume.array, volume.geometry, geometry, shape),
                                       card.normalization))
    stage("resample")
    with torch.no_grad():
        scores = sliding_window(upstream_net, image, tuple(reversed(card.patch_size)), CONFIG["number_classes"],
                                overlap=0.5, tile_batch=2, device=cuda, stitch_device=cuda,
                                mirror_axes=card.mirror_axes if tta else ())
    stage("network")
    probabilities = torch.softmax(scores, dim=0).cpu().numpy()
    del scores
    labels = probabilities_to_labels(probabilities, geometry, volume.geometry, volume.shape_kji)
    labels[~np.isin(labels, [s.label for s in card.labels])] = 0
    stage("postprocess")
    write_results({"segmentation": SegmentationResult(labels, volume.geometry, list(card.labels), card.name)},
                  volume, out, "upstream", overwrite=True, summary=False)
    stage("write")
    times["total_s"] = time.perf_counter() - start
    return times


def read_labels(path: Path):
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def forward_section(results: dict, upstream_module) -> None:
    """benchmarks/gpu.py's forward comparison, with default flags and with `nnmamba predict`'s."""
    import torch

    from gpu import network_section
    from nnmamba.inference.backend_flags import configure_for_inference

    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = True, False
    default = {}
    network_section(default, upstream_module, batch_sizes=(1, 2))
    results["forward_default_flags"] = default
    configure_for_inference("cuda")
    ours = {}
    network_section(ours, upstream_module, batch_sizes=(1, 2))
    results["forward_predict_flags"] = ours
    torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = saved


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", type=Path, default=REPO / ".upstream" / "nnMamba.py")
    parser.add_argument("--tta", action="store_true", help="8-fold mirror TTA in both pipelines")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-forward", action="store_true", help="skip the 128^3 forward comparison")
    parser.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a check of the script)")
    parser.add_argument("--shape", type=int, nargs=3, default=SHAPE_KJI, metavar=("K", "J", "I"))
    parser.add_argument("--patch", type=int, default=128, help="tile edge (128 for the benchmark)")
    args = parser.parse_args(argv)
    if not need_simpleitk():
        return 2
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("benchmarks/predict_e2e.py needs a CUDA device (or --device cpu to check the script)", file=sys.stderr)
        return 2
    from gpu import load_upstream
    from nnmamba.model_card import find_model

    on_cuda = args.device.startswith("cuda")
    results = {"card": torch.cuda.get_device_name() if on_cuda else "cpu", "torch": torch.__version__,
               "tta": args.tta, "volume_kji": list(args.shape), "patch": args.patch, "spacing_mm": SPACING, "network": CONFIG,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    upstream_module = None
    try:
        import mamba_ssm
        results["mamba_ssm"] = mamba_ssm.__version__
        if args.upstream.is_file():
            upstream_module = load_upstream(args.upstream)
        else:
            print(f"upstream file {args.upstream} not found: the upstream pipeline is skipped")
    except ImportError as e:
        print(f"mamba-ssm does not import ({e}): the upstream pipeline is skipped")
    with tempfile.TemporaryDirectory(prefix="nnmamba-e2e-") as tmp:
        tmp = Path(tmp)
        volume_path = tmp / "ct.nrrd"
        write_ct_volume(volume_path, tuple(args.shape))
        CARD["input"]["patch_size"] = [args.patch] * 3
        saved, network = write_card(tmp / "models")
        card = find_model(str(saved.path))
        for precision in ("auto", "fp32"):
            for attempt in ("first", "second"):
                results[f"ours_{precision}_{attempt}"] = run_ours(volume_path, saved.path, tmp / f"ours_{precision}",
                                                                  precision, args.tta, args.device)
                print(f"ours {precision} {attempt}: {results[f'ours_{precision}_{attempt}']}", flush=True)
        if on_cuda:
            torch.cuda.empty_cache()
        if upstream_module is not None and on_cuda:
            upstream = upstream_module.nnMambaSeg(**CONFIG).cuda().eval()
            upstream.load_state_dict(network.state_dict(), strict=True)
            for attempt in ("first", "second"):
                results[f"upstream_{attempt}"] = run_upstream(volume_path, card, upstream, tmp / "upstream", args.tta)
                print(f"upstream {attempt}: {results[f'upstream_{attempt}']}", flush=True)
            reference = read_labels(tmp / "upstream" / "upstream.seg.nrrd")
            for precision in ("auto", "fp32"):
                labels = read_labels(tmp / f"ours_{precision}" / "ct.seg.nrrd")
                results[f"label_agreement_{precision}"] = float((labels == reference).mean())
            del upstream
            torch.cuda.empty_cache()
    if not args.no_forward and on_cuda:
        forward_section(results, upstream_module)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print_table(results)
    return 0


def print_table(r: dict) -> None:
    print(f"\n{r['card']}, torch {r['torch']}, mamba-ssm {r.get('mamba_ssm', '-')}; volume {r['volume_kji']} "
          f"at {r['spacing_mm']} mm, nnMambaSeg{tuple(CONFIG.values())}, {r['patch']}^3 tiles, overlap 0.5, "
          f"TTA {'8-fold' if r['tta'] else 'off'}")
    # other: what no stage counts (model load, the probe check, Triton compilation, graph captures)
    print(f"{'run':24s} {'total':>7s} " + " ".join(f"{s:>11s}" for s in STAGES) + "       other  post share")
    for name in ("ours_auto_first", "ours_auto_second", "ours_fp32_first", "ours_fp32_second",
                 "upstream_first", "upstream_second"):
        if name not in r:
            continue
        row = r[name]
        share = row.get("postprocess_s", 0.0) / row["total_s"]
        other = row["total_s"] - sum(row.get(s + "_s", 0.0) for s in STAGES)
        print(f"{name:24s} {row['total_s']:7.2f} " + " ".join(f"{row.get(s + '_s', 0.0):11.2f}" for s in STAGES)
              + f" {other:11.2f}  {100 * share:5.1f} %")
    if "upstream_second" in r:
        for precision in ("auto", "fp32"):
            ratio = r["upstream_second"]["total_s"] / r[f"ours_{precision}_second"]["total_s"]
            ratio_first = r["upstream_first"]["total_s"] / r[f"ours_{precision}_first"]["total_s"]
            print(f"end to end, ours {precision} vs upstream: {ratio:.2f}x (second runs; first runs {ratio_first:.2f}x); "
                  f"labels identical at {100 * r[f'label_agreement_{precision}']:.3f} % of voxels")
    for flags in ("forward_default_flags", "forward_predict_flags"):
        f = r.get(flags)
        if not f:
            continue
        print(f"forward 1x1x128^3 ({flags}): upstream fp32 {f.get('upstream_fp32_ms', float('nan')):.2f} ms, "
              f"bf16 {f.get('upstream_bf16_ms', float('nan')):.2f} ms; ours graph fp32 "
              f"{f['ours_graph_fp32_b1_ms']:.2f} ms, bf16 {f['ours_graph_bf16_b1_ms']:.2f} ms; speedup fp32 "
              f"{f.get('speedup_fp32', float('nan')):.2f}x, bf16 {f.get('speedup_bf16', float('nan')):.2f}x; "
              f"max|diff| fp32 vs upstream {f.get('diff_ours_graph_fp32_vs_upstream_fp32', float('nan')):.2e}, "
              f"bf16 {f.get('diff_ours_graph_bf16_vs_upstream_fp32', float('nan')):.2e} "
              f"(max|out| {f.get('ref_max_abs_upstream_fp32', float('nan')):.2f})")


if __name__ == "__main__":
    sys.exit(main())
