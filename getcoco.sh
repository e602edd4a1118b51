#!/usr/bin/env bash
# Download COCO 2017 into the layout train.py --dataset coco2017 expects:
#   DIR/train2017/  DIR/val2017/  DIR/annotations/instances_{train,val}2017.json
#
#   bash getcoco.sh [DIR] [--dry-run]      (DIR defaults to ./data/coco)
#
# Interrupted downloads resume (curl -C -); each archive's size is checked
# against the published one before it is unpacked; parts already complete
# are skipped.
set -euo pipefail

DIR=./data/coco
DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    -*) echo "getcoco.sh: unknown option '$arg'" >&2; exit 2 ;;
    *) DIR="$arg" ;;
  esac
done

BASE=http://images.cocodataset.org
# archive, url path, size in bytes, what it unpacks to
PARTS=(
  "annotations_trainval2017.zip|annotations|252907541|annotations/instances_val2017.json"
  "val2017.zip|zips|815585330|val2017"
  "train2017.zip|zips|19336861798|train2017"
)

run() {
  if [ "$DRY" = 1 ]; then echo "+ $*"; else "$@"; fi
}

file_size() {
  stat -c %s "$1" 2>/dev/null || echo 0
}

run mkdir -p "$DIR"
for part in "${PARTS[@]}"; do
  IFS='|' read -r zip sub size target <<<"$part"
  if [ -e "$DIR/$target" ]; then
    echo "$target: already complete, skipped"
    continue
  fi
  if [ "$(file_size "$DIR/$zip")" != "$size" ]; then
    run curl -fL -C - -o "$DIR/$zip" "$BASE/$sub/$zip"
  fi
  if [ "$DRY" = 0 ] && [ "$(file_size "$DIR/$zip")" != "$size" ]; then
    echo "getcoco.sh: $DIR/$zip has $(file_size "$DIR/$zip") bytes, expected $size; run again to resume" >&2
    exit 1
  fi
  run unzip -q -o "$DIR/$zip" -d "$DIR"
  run rm -f "$DIR/$zip"
done
echo "COCO 2017 ready in $DIR"
