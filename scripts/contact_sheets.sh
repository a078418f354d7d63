#!/usr/bin/env bash
# Regenerate the per-family contact sheets in docs/img/ (docs/synth.md shows them): six
# 320 px procedural scenes of each scene family with spills painted in and their boxes drawn.
# Deterministic (fixed seeds); about a minute on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
plant=corridor,pump-room,control-room,walkway,tank-farm,loading-bay,compressor-hall,workshop
seed=7
for fam in warehouse retail office desk kitchen hallway stairs plant; do
  types=$fam; [ "$fam" = plant ] && types=$plant
  .venv/bin/synspill scenes --n 6 --size 320 --scene-types "$types" --seed $seed --out "$tmp/$fam/scenes" > /dev/null
  .venv/bin/synspill inpaint --scenes "$tmp/$fam/scenes" --propose --seed $seed --contact-sheet 6 --out "$tmp/$fam/spills" > /dev/null
  .venv/bin/python -c "import sys; from PIL import Image; Image.open(sys.argv[1]).convert('RGB').save(sys.argv[2], quality=82)" \
    "$tmp/$fam/spills/contact_sheet.png" "docs/img/synth-$fam.jpg"
  echo "docs/img/synth-$fam.jpg"
  seed=$((seed + 1))
done
