#!/usr/bin/env bash
# The CUDA benchmark set of issue 9, in one go, on one GPU machine (figures only).
#   bash benchmarks/gpu.sh [N_EMBED] [N_CAPTION]       # defaults 12000 and 2048
# Each line it prints comes from one run; compare figures only within this output.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${WORK:-$(mktemp -d /tmp/mmbatch-gpu-XXXX)}
n_embed=${1:-12000}
n_caption=${2:-2048}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "== embed: CLIP ViT-B/32, fp16, batch 256, $n_embed JPEGs"
python3 "$here/embed.py" --device cuda --dtype float16 --n "$n_embed" --batch-size 256 \
  --only "${EMBED_ONLY:-forward,chain,raydata,job,job-gpu-decode,job-4actors}" --workdir "$work/embed"
echo "== caption: BLIP-base, fp16, 20 new tokens, $n_caption JPEGs"
python3 "$here/caption.py" --device cuda --dtype float16 --n "$n_caption" --batch-size 256 --workdir "$work/caption"
