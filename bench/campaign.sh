#!/usr/bin/env bash
# The dgls-tiny training campaign on this CPU: start it, or continue it from the state kept
# in git (model/campaign/dgls-tiny/), in the background. One chunk per call; it checkpoints
# every few minutes into $RUN and stops by itself after $MINUTES.
#
#   bench/campaign.sh                 # continue (or start) for 120 minutes
#   MINUTES=30 bench/campaign.sh      # a shorter chunk
#   DECAY_START=900 DECAY_STEPS=150 bench/campaign.sh   # decay the lr (a branch to evaluate)
#   bench/campaign.sh keep            # copy $RUN's checkpoint into git's place, compacted to bf16
#
# The tokenizer is the one kept beside the state, since the checkpoint is tied to it. Every setting that defines the run is below; the
# trainer refuses to resume with another (only ADJUSTABLE ones in model/training/train.py may move).
set -euo pipefail
cd "$(dirname "$0")/.."
KEPT=model/campaign/dgls-tiny
DATA=${DATA:-$HOME/.cache/dgls-campaign}
RUN=${RUN:-$DATA/run}
MINUTES=${MINUTES:-120}
. .venv/bin/activate

if pgrep -f -- "dgls.model.training.train .*--out $RUN( |$)" >/dev/null; then
  echo "bench/campaign.sh: a trainer is already running on $RUN; stop it first (kill -TERM, it saves)" >&2
  exit 2
fi
if [ "${1:-}" = keep ]; then
  [ -f "$RUN/checkpoint/state.json" ] || { echo "bench/campaign.sh: no checkpoint in $RUN" >&2; exit 2; }
  python -c 'import sys; from pathlib import Path; from dgls.model.training.train_state import compact; compact(Path(sys.argv[1]), Path(sys.argv[2]))' \
    "$RUN/checkpoint" "$KEPT/checkpoint"
  cp "$RUN/train_log.jsonl" "$KEPT/train_log.jsonl"
  du -sh "$KEPT"
  exit 0
fi

# The corpus is the stdlib plus the permissive packages of an environment installed from the
# lock kept with the campaign (not the current test lock, which may move): the same files.
if [ ! -f "$DATA/corpus/manifest.json" ]; then
  python3 -m venv "$DATA/corpus-venv"
  "$DATA/corpus-venv/bin/pip" install -q torch==2.13.0
  "$DATA/corpus-venv/bin/pip" install -q -c "$KEPT/corpus-constraints.txt" -e ".[dev]"
  "$DATA/corpus-venv/bin/python" -m dgls.model.training.corpus "$DATA/corpus"
fi
if [ ! -d "$RUN/checkpoint" ] && [ -f "$KEPT/checkpoint/state.json" ]; then
  mkdir -p "$RUN" && cp -r "$KEPT/checkpoint" "$RUN/checkpoint" && cp "$KEPT/train_log.jsonl" "$RUN/train_log.jsonl"
fi
nohup python -m dgls.model.training.train --corpus "$DATA/corpus" --tokenizer "$KEPT/tokenizer.json" --out "$RUN" \
  --config dgls-tiny --batch-size "${BATCH_SIZE:-32}" --lr "${LR:-1e-3}" --warmup-steps 100 --steps 40000 --schedule wsd \
  --prefix-tokens "${PREFIX_TOKENS:-256}" --suffix-tokens "${SUFFIX_TOKENS:-64}" --ar-weight "${AR_WEIGHT:-1.0}" --ar-fraction "${AR_FRACTION:-0.25}" --canvas-draws "${CANVAS_DRAWS:-1}" \
  --decay-start "${DECAY_START:-0}" --decay-steps "${DECAY_STEPS:-500}" --precision "${PRECISION:-auto}" \
  --max-minutes "$MINUTES" --checkpoint-minutes "${CHECKPOINT_MINUTES:-10}" --log-every 10 --threads "${THREADS:-0}" \
  >> "$DATA/train.out" 2>&1 &
echo "training in the background (pid $!): tail -f $DATA/train.out; log $RUN/train_log.jsonl"
