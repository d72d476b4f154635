"""dgls's engine vs the transformers reference, same weights, same run, same device.

    python bench/bench_engine.py [--config bench-16m] [--prompt 512] [--canvas 32] [--reps 5]

Measures (1) one denoising step: the decoder over the canvas reading the prompt cache, and
(2) whole canvases: prompt encoding plus a fixed number of denoising steps with the sampler
(adaptive stopping off, so both sides run every step), for one canvas and for n parallel
candidates. Random weights: speed does not depend on them. Checks the two agree on the step's
logits and on every canvas's tokens (same seed), prints ratios and the device, and writes
bench/out/engine.json and bench/engine.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dgls.model import loader, random_checkpoint
from dgls.model.config import CONFIGS, SamplerConfig
from dgls.model.sampler import denoise

HERE = Path(__file__).resolve().parent


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def timed(fn, reps: int, device: torch.device) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="bench-16m", choices=sorted(CONFIGS))
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--canvas", type=int, default=32)
    ap.add_argument("--steps", type=int, nargs="+", default=[12, 48])
    ap.add_argument("--candidates", type=int, default=4, help="parallel canvases in the last comparison")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from transformers import DiffusionGemmaForBlockDiffusion
    from transformers.models.diffusion_gemma.generation_diffusion_gemma import EntropyBoundSamplerConfig

    device = torch.device(args.device)
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = random_checkpoint.write(Path(tmp) / "ckpt", args.config, seed=0)
        mine, _ = loader.load_network(ckpt, dtype=dtype, device=device)
        ref = DiffusionGemmaForBlockDiffusion.from_pretrained(ckpt, dtype=dtype).to(device).eval()
    cfg = mine.cfg
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(4, cfg.vocab_size, (1, args.prompt), generator=g).to(device)
    canvas = torch.randint(4, cfg.vocab_size, (1, args.canvas), generator=g).to(device)
    sc = torch.randn(1, args.canvas, cfg.vocab_size, generator=g).to(device, dtype)
    params = sum(p.numel() for p in mine.parameters())
    print(f"device: {device_name(device)}; torch {torch.__version__}; config {args.config} "
          f"({params / 1e6:.1f} M parameters), prompt {args.prompt}, canvas {args.canvas}, dtype {dtype}")

    results: dict[str, dict] = {}

    # (1) One denoising step over an encoded prompt.
    cache = mine.encode(prompt)
    with torch.no_grad():
        ref_cache = ref(input_ids=prompt, decoder_input_ids=canvas).past_key_values

        def ref_step():
            return ref(decoder_input_ids=canvas, past_key_values=ref_cache, self_conditioning_logits=sc).logits

        def dgls_step():
            return mine.decode(canvas, cache, sc)

        diff = (dgls_step().float() - ref_step().float()).abs().max().item()
        ref_ms, dgls_ms = timed(ref_step, args.reps * 4, device), timed(dgls_step, args.reps * 4, device)
    print(f"decoder step: max |logit difference| vs reference {diff:.2e}")
    assert diff < 1e-2, "dgls disagrees with the reference: benchmark numbers would be meaningless"
    results["decoder step"] = {"reference_ms": ref_ms, "dgls_ms": dgls_ms, "max_logit_diff": diff}

    # (2) Whole canvases: encode + a fixed number of steps (no adaptive stop). With n > 1
    # candidates the reference encodes the prompt once per canvas; dgls encodes it once.
    ref.config.canvas_length = args.canvas  # the reference's generate takes the length from its config
    for n, steps in [(1, s) for s in args.steps] + [(args.candidates, args.steps[0])]:
        s = SamplerConfig(max_steps=steps, confidence_threshold=1e-12)
        batch = prompt.expand(n, -1)

        def ref_canvas():
            torch.manual_seed(11)
            return ref.generate(batch, max_new_tokens=args.canvas, max_denoising_steps=steps,
                                sampler_config=EntropyBoundSamplerConfig(entropy_bound=s.entropy_bound),
                                t_min=s.t_min, t_max=s.t_max, stability_threshold=s.stability_threshold,
                                confidence_threshold=s.confidence_threshold)

        def dgls_canvas():
            return denoise(mine, mine.encode(prompt), n, s, canvas_length=args.canvas, seed=11)

        expected = ref_canvas().sequences[:, -args.canvas:]
        got = dgls_canvas().tokens
        eos = torch.isin(got, torch.tensor(cfg.eos_ids, device=device)).long()
        got = torch.where((eos.cumsum(-1) - eos) > 0, cfg.pad_id, got)  # the reference pads after EOS
        results[f"{n} canvas{'es' if n > 1 else ''}, {steps} steps"] = {
            "reference_ms": timed(ref_canvas, args.reps, device),
            "dgls_ms": timed(dgls_canvas, args.reps, device),
            "identical_tokens": bool(torch.equal(expected, got)),
        }

    print(f"{'what':<26}{'reference ms':>14}{'dgls ms':>10}{'speed-up':>10}  same tokens")
    for name, r in results.items():
        ref_med, dgls_med = statistics.median(r["reference_ms"]), statistics.median(r["dgls_ms"])
        r["speedup"] = ref_med / dgls_med
        same = {True: "yes", False: "NO", None: "-"}[r.get("identical_tokens")]
        print(f"{name:<26}{ref_med:>14.1f}{dgls_med:>10.1f}{r['speedup']:>9.2f}x  {same}")

    out = HERE / "out"
    out.mkdir(exist_ok=True)
    meta = {"device": device_name(device), "torch": torch.__version__, "config": args.config,
            "prompt": args.prompt, "canvas": args.canvas, "params": params}
    (out / "engine.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    plot(results, meta, HERE / "engine.png")


def plot(results: dict, meta: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    y = range(len(names))
    ref = [statistics.median(results[n]["reference_ms"]) for n in names]
    mine = [statistics.median(results[n]["dgls_ms"]) for n in names]
    ax.barh([i + 0.2 for i in y], ref, height=0.4, label="transformers reference", color="#999")
    ax.barh([i - 0.2 for i in y], mine, height=0.4, label="dgls", color="#2a7")
    for i, (r, m) in enumerate(zip(ref, mine)):
        ax.text(max(r, m) * 1.02, i, f"{r / m:.2f}x", va="center")
    ax.set_yticks(list(y), names)
    ax.set_xlabel("median ms (lower is better)")
    ax.set_title(f"{meta['config']}, prompt {meta['prompt']}, canvas {meta['canvas']} — {meta['device']}", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xlim(0, max(ref + mine) * 1.2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
