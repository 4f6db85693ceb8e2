#!/usr/bin/env bash
# The CUDA benchmark set of issue 9, in one go, on one GPU machine (figures only).
#   bash benchmarks/gpu.sh [N_EMBED] [N_CAPTION] [REPEAT]     # defaults 12000, 2048 and 4 (0: no repeat set)
# EMBED_ONLY / EMBED_REPEAT_ONLY / CAPTION_ONLY pick contenders; `-` skips that section. What
# issue 9 still has to measure: four 0.25-GPU actors; the CPU path's changes after the H100 call
# of 2026-11-27, which weigh most on 48,000 images; the copies made outside the device lock;
# where caption's actor loses to generate alone (the `actor` contenders run the job's model step
# without Ray); decode_on_device for caption, JPEG bytes through Ray instead of 885 KB of fp16
# pixels an image. In two calls (a call may run 10 minutes), about 5 and 4 minutes:
#   ROW_GROUP_ROWS=256 EMBED_ONLY=forward,chain,job,actor,job-gpu-decode,actor-gpu-decode,job-4actors \
#     CAPTION_ONLY=- EMBED_REPEAT_ONLY=job bash benchmarks/gpu.sh 12000 4096 4
#   EMBED_ONLY=- CAPTION_ONLY=job,job-gpu-decode,actor,actor-gpu-decode,generate bash benchmarks/gpu.sh 12000 4096 0
# Each line it prints comes from one run; compare figures only within this output.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${WORK:-$(mktemp -d /tmp/mmbatch-gpu-XXXX)}
n_embed=${1:-12000}
n_caption=${2:-2048}
repeat=${3:-4}
export PYTHONUNBUFFERED=1
# A wheel installed with `pip install --no-compile` (the device recipe's) has no bytecode, and
# every Ray worker then compiles Ray's modules as it starts: on the 2-core VM that made
# ray.init 1.8 s slower and a first Ray Data job 1 s slower. A normal install has it; so here.
for pkg in ray mmbatch; do
  dir=$(python3 -c "import os, $pkg; print(os.path.dirname($pkg.__file__))" 2>/dev/null) || continue
  python3 -m compileall -q -j 0 "$dir" >/dev/null 2>&1 || true
done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# ROW_GROUP_ROWS=128: the corpus files in row groups of 128 rows (read in row groups, fused with decoding)
embed() { python3 "$here/embed.py" --device cuda --dtype float16 --batch-size 256 --workdir "$work/embed" \
            ${ROW_GROUP_ROWS:+--row-group-rows "$ROW_GROUP_ROWS"} "$@"; }
# each section's header says when it began (seconds into this script), to plan a call's time limit
echo "== [$SECONDS s] embed: CLIP ViT-B/32, fp16, batch 256, $n_embed JPEGs"
only=${EMBED_ONLY:-forward,chain,raydata,job,actor,job-gpu-decode,actor-gpu-decode,job-4actors}
[ "$only" = - ] || embed --n "$n_embed" --only "$only"
echo "== [$SECONDS s] caption: BLIP-base, fp16, 20 new tokens, $n_caption JPEGs"
only=${CAPTION_ONLY:-job,job-gpu-decode,actor,actor-gpu-decode,generate,loop}
[ "$only" = - ] || python3 "$here/caption.py" --device cuda --dtype float16 --n "$n_caption" --batch-size 256 \
  --workdir "$work/caption" --only "$only"
if [ "$repeat" -gt 0 ]; then
  echo "== [$SECONDS s] embed: the same $n_embed JPEGs read $repeat times over (start-up weighs less)"
  only=${EMBED_REPEAT_ONLY:-chain,job,job-gpu-decode}
  [ "$only" = - ] || embed --n "$n_embed" --repeat "$repeat" --only "$only"
fi
echo "== [$SECONDS s] done"
