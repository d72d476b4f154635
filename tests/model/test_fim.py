"""FIM examples, batches and the diffusion objective; the tokenizer they are built with; the
network's padded-prompt and self-conditioning masks that training relies on."""

from __future__ import annotations

import random

import pytest
import torch

from dgls.model.training import corpus, fim
from dgls.model.training.bpe import BASE_SPECIALS
from dgls.model.config import CanvasLengths, from_name
from dgls.model.training.fim import (
    BLOCK, CANVAS_KIND, FUNCTION_BODY, HOLE_KINDS, LINE, LINE_SUFFIX, FimConfig, FimDataset, ObjectiveConfig,
)
from dgls.model.network import DiffusionGemma
from dgls.model.prompt import FIM_TOKENS, InfillRequest, fim_prompt
from dgls.model.random_checkpoint import init_random
from dgls.model.tokenizer import Tokenizer

from .training_data import build_corpus, train_tokenizer
from .training_data import one_thread  # noqa: F401  (autouse fixture)

CANVAS = CanvasLengths(line=16, block=48)
SMALL = FimConfig(prefix_tokens=64, suffix_tokens=24)



@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fim")
    corpus_dir = build_corpus(root)
    tok = Tokenizer.from_file(train_tokenizer(corpus_dir, root / "tokenizer.json"))
    return corpus.read_split(corpus_dir, "train"), tok


def dataset(data, fim_cfg: FimConfig = SMALL, pad_weight: float = 0.1) -> FimDataset:
    records, tok = data
    return FimDataset(records, tok, bos=2, eos=1, pad=0, fim=fim_cfg, canvas=CANVAS, pad_weight=pad_weight)


def test_tokenizer_ids_and_round_trip(data):
    _, tok = data
    assert [tok.token_id(t) for t in BASE_SPECIALS + list(FIM_TOKENS)] == list(range(7))
    assert tok.vocab_size == 512
    for text in ["def f(x):\n\treturn x + 1\r\n", "s = 'ünïcödé ✓ 𝔘'\n", "    \n\n  ", "",
                 "marker = '<|fim_middle|>' + '<eos>'  # text, not control tokens\n"]:
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert not set(ids) & set(range(7)), "user text never becomes a special token"


@pytest.mark.parametrize("kind", HOLE_KINDS)
def test_holes_cut_the_file_exactly_and_look_like_edits(data, kind):
    records, _ = data
    rng = random.Random(kind)
    found = 0
    for rec in records:
        text = rec["text"]
        for _ in range(20):
            hole = fim.pick_hole(text, fim.line_starts(text), rec["functions"], kind, rng, 12)
            if hole is None:
                continue
            found += 1
            prefix, middle = text[:hole.start], text[hole.start:hole.end]
            cursor_line = prefix.rsplit("\n", 1)[-1]
            assert middle.strip() and middle == middle.rstrip()
            if kind == LINE_SUFFIX:
                assert "\n" not in middle and cursor_line.strip()  # code before the cursor
            else:
                assert not cursor_line.strip()  # the cursor sits at the indentation
            if kind == LINE:
                assert "\n" not in middle
            if kind == BLOCK:
                assert sum(1 for line in middle.split("\n") if line.strip()) >= 2
            if kind == FUNCTION_BODY:
                assert [hole.start, hole.end] in rec["functions"]
    assert found > 20


def test_windows_fit_their_budgets_and_cut_at_lines(data):
    records, tok = data
    text = records[0]["text"]
    prefix, suffix = fim.fit_windows(tok, text[:4000], text[4000:8000], 50, 20)
    assert len(tok.encode(prefix)) <= 50 and len(tok.encode(suffix)) <= 20
    assert text[:4000].endswith(prefix) and text[4000:8000].startswith(suffix)
    assert text[:4000][: -len(prefix)].endswith("\n")


def test_example_uses_the_engines_prompt_and_ends_with_eos_then_padding(data):
    _, tok = data
    ex = fim.make_example(tok, 2, 1, 0, LINE_SUFFIX, "x = fo", "o(1)", "\nprint(x)\n", "pkg/mod.py", 16)
    assert ex.prompt == fim_prompt(tok, InfillRequest("x = fo", "\nprint(x)\n", "python", "pkg/mod.py"), 2)
    middle = tok.encode("o(1)")
    assert ex.canvas == middle + [1] + [0] * (16 - len(middle) - 1)
    assert fim.make_example(tok, 2, 1, 0, BLOCK, "", "x = 1\n" * 40, "", "", 16) is None  # does not fit


def test_batches_are_reproducible_one_canvas_each_left_padded(data):
    ds = dataset(data)
    a, b = ds.batch(6, random.Random(1)), ds.batch(6, random.Random(1))
    assert torch.equal(a.prompt, b.prompt) and torch.equal(a.target, b.target)
    lengths = set()
    for seed in range(12):
        batch = ds.batch(6, random.Random(seed))
        B, L = batch.target.shape
        P = batch.prompt.shape[1]
        lengths.add(L)
        kinds = {CANVAS_KIND[k] for k in batch.kinds}
        assert len(kinds) == 1 and L == CANVAS.for_kind(kinds.pop())
        assert batch.prompt_mask.shape == (B, P) and batch.prompt_mask[:, -1].all()
        # Left padding: each row is pads then its prompt, which starts with <bos> <|fim_suffix|>
        # (suffix first, the default order) and ends with <|fim_middle|>.
        for row, mask in zip(batch.prompt, batch.prompt_mask):
            n = int(mask.sum())
            assert not mask[: P - n].any() and (row[: P - n] == 0).all()
            assert row[P - n].item() == 2 and row[P - n + 1].item() == 5 and row[-1].item() == 6
            assert (row[P - n:] == 4).sum() == 1  # one <|fim_prefix|>, between suffix and prefix
        # Weights: 1 up to and including the first EOS, the pad weight after it.
        for target, weight, middle in zip(batch.target, batch.weight, batch.middle):
            eos = (target == 1).nonzero()[0].item()
            assert middle[: eos + 1].all() and not middle[eos + 1:].any()
            assert (weight[: eos + 1] == 1).all() and torch.allclose(weight[eos + 1:], torch.tensor(0.1))
            assert (target[eos + 1:] == 0).all()
    assert lengths == {16, 48}


def test_noise_replaces_tokens_with_probability_t():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(7, 512, (3, 4000), generator=g)
    noisy = fim.corrupt(target, torch.tensor([0.0, 0.5, 1.0]), 512, g)
    changed = (noisy != target).float().mean(-1)
    assert changed[0] == 0
    assert abs(changed[1] - 0.5 * (1 - 1 / 512)) < 0.03
    assert changed[2] > 0.99
    assert noisy.min() >= 0 and noisy.max() < 512 and (noisy[2] < 7).any()  # specials can be noise too


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return init_random(DiffusionGemma(from_name("test-tiny")), 0)


@pytest.mark.parametrize("ar_weight", [0.0, 1.0])
def test_loss_is_a_weighted_mean_and_every_parameter_learns(data, model, ar_weight):
    batch = dataset(data).batch(4, random.Random(3))
    model.train()
    obj = ObjectiveConfig(sc_probability=1.0, ar_weight=ar_weight)
    out = fim.diffusion_loss(model, batch, obj, torch.Generator().manual_seed(0))
    assert out.loss.dim() == 0 and torch.isfinite(out.loss) and out.sc_mask.all()
    assert out.noise.shape == (4,) and 0 <= out.middle_accuracy <= 1 and 0 <= out.noised_accuracy <= 1
    assert (out.ar_loss > 0) == (ar_weight > 0)
    assert out.loss.item() == pytest.approx(out.canvas_loss + ar_weight * out.ar_loss, rel=1e-5)
    model.zero_grad()
    out.loss.backward()
    inert = fim.inert_parameters(model.cfg, obj)
    # Every parameter the objective can move gets a gradient; the inert ones (an encoder
    # scalar whose output reaches the loss only through an RMSNorm) are exactly those whose
    # value does not change the loss, whatever their gradient rounds to.
    silent = {n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    assert silent <= inert
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in sorted(inert):
            params[name].mul_(3.0)
            scaled = fim.diffusion_loss(model, batch, obj, torch.Generator().manual_seed(0))
            params[name].div_(3.0)
            assert scaled.loss.item() == pytest.approx(out.loss.item(), rel=1e-4), name
        # The next-token head reads the last layer's output, so the scalar before it counts.
        second_last = params[f"layers.{model.cfg.num_layers - 2}.encoder_scalar"]
        second_last.mul_(3.0)
        scaled = fim.diffusion_loss(model, batch, obj, torch.Generator().manual_seed(0))
        second_last.div_(3.0)
        assert (scaled.loss.item() != pytest.approx(out.loss.item(), rel=1e-4)) == (ar_weight > 0)
    # The same draws without self-conditioning give another loss; the padding weight matters.
    plain = fim.diffusion_loss(model, batch, ObjectiveConfig(sc_probability=0.0, ar_weight=ar_weight),
                               torch.Generator().manual_seed(0))
    assert not plain.sc_mask.any() and plain.loss.item() != out.loss.item()
    heavy = fim.diffusion_loss(model, dataset(data, pad_weight=1.0).batch(4, random.Random(3)),
                               ObjectiveConfig(sc_probability=0.0, ar_weight=ar_weight), torch.Generator().manual_seed(0))
    assert heavy.loss.item() != plain.loss.item()


def test_the_next_token_loss_on_a_share_of_the_prompt(data, model):
    """ar_fraction: the loss is the mean over a random share of the positions: the same
    positions' mean as the full loss computes them, and each draw picks other positions."""
    batch = dataset(data).batch(4, random.Random(3))
    model.eval()
    _, hidden = model.encode_with_hidden(batch.prompt, batch.prompt_mask)
    full = fim.next_token_loss(model, hidden, batch.prompt, batch.prompt_mask)
    shares = [fim.next_token_loss(model, hidden, batch.prompt, batch.prompt_mask, 0.25, torch.Generator().manual_seed(s))
              for s in range(12)]
    assert len({round(x.item(), 6) for x in shares}) > 1  # other positions each draw
    assert abs(sum(x.item() for x in shares) / len(shares) - full.item()) < 0.15 * full.item()
    tiny = fim.next_token_loss(model, hidden, batch.prompt, batch.prompt_mask, 1e-9, torch.Generator().manual_seed(0))
    assert torch.isfinite(tiny)  # never an empty mean: each row keeps its last position
    model.train()
    out = fim.diffusion_loss(model, batch, ObjectiveConfig(ar_weight=1.0, ar_fraction=0.25),
                             torch.Generator().manual_seed(0))
    assert out.ar_loss > 0 and torch.isfinite(out.loss)


def test_several_canvases_per_prompt_cover_the_noise_levels_and_learn(data, model):
    """canvas_draws: each example's prompt is encoded once and decoded under several noise
    levels, one per stratum of [0, 1); the encoder learns from all of them."""
    batch = dataset(data).batch(4, random.Random(3))
    model.train()
    out = fim.diffusion_loss(model, batch, ObjectiveConfig(canvas_draws=3), torch.Generator().manual_seed(0))
    assert out.noise.shape == (12,) and out.sc_mask.shape == (12,) and torch.isfinite(out.loss)
    strata = (out.noise.view(4, 3) * 3).floor()
    assert torch.equal(strata, torch.arange(3.0).expand(4, 3))
    model.zero_grad()
    out.loss.backward()
    assert model.embed.grad.abs().sum() > 0 and model.layers[0].attn.wqkv.grad.abs().sum() > 0
    # Every draw reads its own example's prompt: a cache's rows repeated compute what the
    # prompts repeated and encoded would (left padding included).
    model.eval()
    prompt, mask = batch.prompt, batch.prompt_mask
    canvas = torch.randint(0, 512, (12, 16), generator=torch.Generator().manual_seed(1))
    shared = model.decode(canvas, model.encode(prompt, mask).repeat_rows(3))
    repeated = model.decode(canvas, model.encode(prompt.repeat_interleave(3, 0), mask.repeat_interleave(3, 0)))
    torch.testing.assert_close(shared, repeated, rtol=1e-4, atol=1e-4)


def test_left_padded_prompts_compute_what_each_prompt_alone_does(model):
    """RoPE is relative, padded keys are masked: a padded row of a training batch matches the
    unpadded prompt the engine encodes. 25 tokens exceed the 16-token sliding window."""
    model.eval()
    g = torch.Generator().manual_seed(0)
    short, long = torch.randint(7, 512, (1, 7), generator=g), torch.randint(7, 512, (1, 25), generator=g)
    prompt = torch.zeros(2, 25, dtype=torch.long)
    mask = torch.zeros(2, 25, dtype=torch.bool)
    prompt[0, -7:], mask[0, -7:] = short, True
    prompt[1], mask[1] = long, True
    canvas = torch.randint(0, 512, (2, 16), generator=g)
    sc = torch.randn(2, 16, 512, generator=g) * 3
    batched = model.decode(canvas, model.encode(prompt, mask), sc, torch.tensor([True, False]))
    alone_short = model.decode(canvas[:1], model.encode(short), sc[:1])
    alone_long = model.decode(canvas[1:], model.encode(long))  # self-conditioning masked off: none
    torch.testing.assert_close(batched[0], alone_short[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(batched[1], alone_long[0], rtol=1e-4, atol=1e-4)


def test_gradients_only_in_training_mode(model):
    prompt, canvas = torch.tensor([[5, 6, 7]]), torch.tensor([[8] * 16])
    model.eval()
    assert not model.decode(canvas, model.encode(prompt)).requires_grad  # inference callers need no no_grad
    model.train()
    assert model.decode(canvas, model.encode(prompt)).requires_grad
    with torch.no_grad():
        assert not model.decode(canvas, model.encode(prompt)).requires_grad
    model.eval()


def test_dataset_refuses_what_it_cannot_draw_from(data):
    records, tok = data
    with pytest.raises(fim.FimError, match="no corpus records"):
        FimDataset([], tok, bos=2, eos=1, pad=0, fim=SMALL)
    one_line = [{"text": "x = 1\n", "functions": [], "path": "x.py"}]
    ds = FimDataset(one_line, tok, bos=2, eos=1, pad=0, fim=FimConfig(line_suffix_weight=0, line_weight=0,
                                                                        function_body_weight=0), canvas=CANVAS)
    with pytest.raises(fim.FimError, match="could not draw 2 block examples"):
        ds.batch(2, random.Random(0))
