#!/usr/bin/env bash
# A stopped run's checkpoint_last.pt in parts of at most 4 MB, so a run whose checkpoint is over the repository's
# 5 MB limit per file (`wide`: 6.2 MB, 4 MB of it AdamW's state) can still be committed and resumed in a later
# session. The parts carry a sha256 of the whole file; joining checks it.
#   bash experiments/acdc_issue28/checkpoint_parts.sh split DIR   # DIR/checkpoint_last.pt -> DIR/checkpoint_last.pt.partNN + .sha256, removes the .pt
#   bash experiments/acdc_issue28/checkpoint_parts.sh join DIR    # the reverse (pair_recipe.sh's run() does it before resuming)
set -euo pipefail
cmd=${1:?split or join}; dir=${2:?run folder}
ckpt="$dir/checkpoint_last.pt"
case $cmd in
  split)
    [ -f "$ckpt" ] || { echo "no $ckpt to split" >&2; exit 2; }
    rm -f "$ckpt".part??
    (cd "$dir" && sha256sum checkpoint_last.pt > checkpoint_last.pt.sha256 && split -b 4M -d -a 2 checkpoint_last.pt checkpoint_last.pt.part)
    rm "$ckpt"; ls "$ckpt".part?? ;;
  join)
    compgen -G "$ckpt.part??" > /dev/null || { echo "no $ckpt.partNN in $dir" >&2; exit 2; }
    cat "$ckpt".part?? > "$ckpt.tmp" && mv "$ckpt.tmp" "$ckpt"
    (cd "$dir" && sha256sum -c --quiet checkpoint_last.pt.sha256) || { echo "$ckpt: parts do not join to the recorded sha256" >&2; rm -f "$ckpt"; exit 1; }
    rm -f "$ckpt".part?? "$ckpt.sha256" ;;
  *) echo "usage: $0 split|join DIR" >&2; exit 2 ;;
esac
