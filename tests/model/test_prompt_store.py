"""The prompt store: a prompt that starts like a recent one is encoded only from where it
differs, and the decoder reads the same cache a fresh encode would give."""

from __future__ import annotations

import pytest
import torch

from dgls.model.api import InfillRequest
from dgls.model.engine import BatchItem, Engine, batch_cache
from dgls.model.prompt_store import PromptStore

CLOSE = dict(atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def engine(random_checkpoint):
    return Engine.load(random_checkpoint, device="cpu")


def fresh(model, ids):
    return model.extend(torch.tensor([ids]))


def assert_same_cache(model, got, ids):
    """Same keys/values as a fresh encode, and the same logits for a canvas reading them."""
    want = fresh(model, ids)
    assert got.length == want.length == len(ids)
    for a, b in zip(got.keys + got.values, want.keys + want.values):
        torch.testing.assert_close(a, b, **CLOSE)
    canvas = torch.tensor([[7, 8, 9, 10, 11, 12]])
    torch.testing.assert_close(model.decode(canvas, got.prompt_cache()), model.decode(canvas, want.prompt_cache()), **CLOSE)


# A prompt, then what the next request sends after each kind of edit.
BASE = list(range(20, 120))
EDITS = {
    "typing at the end": (BASE + [200, 201], 100),
    "the last token retyped": (BASE[:-1] + [300, 301], 99),
    "an edit in the middle": (BASE[:50] + [400] + BASE[51:], 50),
    "an edit at the top": ([450] + BASE[1:], 0),
    "a deletion": (BASE[:60] + BASE[70:], 60),
    "a shorter prompt, a prefix of the last": (BASE[:40], 39),  # the last token is always encoded
    "the same prompt again": (BASE, 100),
    "another file": (list(range(300, 340)), 0),
}


@pytest.mark.parametrize("edit", EDITS)
def test_an_edit_anywhere_reuses_what_precedes_it_and_matches_a_fresh_encode(engine, edit):
    ids, reused_expected = EDITS[edit]
    store = PromptStore(2**30)
    store.encode(engine.model, BASE)
    state, reused = store.encode(engine.model, ids)
    assert reused == reused_expected
    assert_same_cache(engine.model, state, ids)
    assert store.reused_tokens == reused and store.encoded_tokens == len(BASE) + len(ids) - reused


def test_typing_keeps_one_entry_per_place_and_the_store_evicts_under_its_bound(engine):
    model = engine.model
    one = fresh(model, BASE).nbytes
    store = PromptStore(int(2.5 * one))
    typed = BASE
    for token in range(130, 140):  # ten keystrokes in one file: the entry is replaced each time
        typed = typed + [token]
        store.encode(model, typed)
    assert len(store.entries) == 1 and store.entries[0].ids == typed

    others = [list(range(200 + 100 * k, 300 + 100 * k)) for k in range(3)]
    for ids in others:
        store.encode(model, ids)
    assert store.nbytes <= store.max_bytes and len(store.entries) == 2
    assert [e.ids for e in store.entries] == others[1:]  # least recently used out first
    _, reused = store.encode(model, typed)  # evicted: encoded again from scratch
    assert reused == 0

    tiny = PromptStore(one // 2)  # an entry larger than the whole bound is not kept
    tiny.encode(model, BASE)
    assert tiny.entries == [] and tiny.nbytes == 0


def test_rows_encoded_one_by_one_decode_as_each_prompt_alone(engine):
    """What batching rests on: prompts of different lengths encoded separately, left-padded
    afterwards, each row's canvas placed after its own prompt."""
    model = engine.model
    prompts = [BASE[:7], BASE, BASE[30:62]]
    states = [fresh(model, ids) for ids in prompts]
    owner = torch.tensor([0, 1, 1, 2])
    canvas = torch.tensor([[5, 6, 7, 8]] * 4)
    batched = model.decode(canvas, batch_cache(states, owner))
    for row, p in enumerate(owner.tolist()):
        alone = model.decode(canvas[:1], states[p].prompt_cache())
        torch.testing.assert_close(batched[row : row + 1], alone, **CLOSE)


def test_engine_reports_reused_tokens_and_keystrokes_reencode_a_few(engine):
    engine.prompts.clear()
    prefix = "def total(items):\n    result = 0\n    for item in items:\n        result += item\n    return res"
    first = engine.infill(InfillRequest(prefix, "\n\nprint(total([1, 2]))\n", path="t.py"), max_steps=2, seed=0)
    nxt = engine.infill(InfillRequest(prefix + "u", "\n\nprint(total([1, 2]))\n", path="t.py"), max_steps=2, seed=0)
    assert first.reused_tokens == 0
    # This checkpoint is PSM: the suffix follows the edit, so it is encoded again; little else.
    assert nxt.prompt_tokens - nxt.reused_tokens <= engine.count_tokens("\n\nprint(total([1, 2]))\n") + 4
    [again] = engine.infill_many([BatchItem(InfillRequest(prefix + "u", "\n\nprint(total([1, 2]))\n", path="t.py"))],
                                 canvas_length=8, max_steps=2)
    assert again.reused_tokens == again.prompt_tokens


def test_fixed_model_suggests_the_same_with_and_without_the_store(fixed_checkpoint):
    engine = Engine.load(fixed_checkpoint, device="cpu")
    none = Engine.load(fixed_checkpoint, device="cpu", prompt_cache_mib=0)
    prefix = "import os\n\n\ndef main():\n    path = os.getcwd()\n    return "
    for typed in ("", "p", "pa"):
        req = InfillRequest(prefix + typed, "\n", language="python", path="m.py")
        a = engine.infill(req, n=2, seed=3)
        b = none.infill(req, n=2, seed=3)
        assert [c.token_ids for c in a.candidates] == [c.token_ids for c in b.candidates]
    assert engine.prompts.reused_tokens > 0 and none.prompts.reused_tokens == 0
