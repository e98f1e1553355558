#!/usr/bin/env bash
# The demo before and after a change, on one machine: its final eval line and its export's bytes.
#
#   bash bench/demo_before_after.sh BASE_REV [OUT.md]
#
# Runs `python main.py --config=configs/demo.py` at BASE_REV (a git worktree) and on the working tree, both on the
# vocab and dataset the first run builds (the vocab trainer is not deterministic from run to run yet, issue 23, so
# each run building its own would differ for that reason alone), then writes both eval lines and the sha256 of every
# export file to OUT.md (default bench/results/demo_before_after.md).
set -euo pipefail
base=${1:?usage: bash bench/demo_before_after.sh BASE_REV [OUT.md]}
out=${2:-bench/results/demo_before_after.md}
repo=$(git rev-parse --show-toplevel)
scratch=$(mktemp -d)
trap 'git -C "$repo" worktree remove --force "$scratch/before" >/dev/null 2>&1 || true; rm -rf "$scratch"' EXIT
git -C "$repo" worktree add --detach "$scratch/before" "$base" >/dev/null
data="$scratch/data"
corpus="$scratch/before/data/demo/corpus.txt"
run() {  # run NAME TREE: the demo in TREE, on the shared data
  (cd "$2" && python main.py --config=configs/demo.py --workdir="$scratch/run_$1" --config.data.build.cache_dir="$data" \
    --config.data.build.corpus="$corpus" > "$scratch/$1.log" 2>&1)
  grep '^eval step 1000' "$scratch/$1.log"
}
before=$(run before "$scratch/before")
after=$(run after "$repo")
{
  echo "# The demo before and after a change"
  echo
  echo "\`bash bench/demo_before_after.sh $base\` on $(date -u +%Y-%m-%d), $(nproc) cores; before: $base ($(git -C "$repo" rev-parse --short "$base")), after: the working tree at $(git -C "$repo" rev-parse --short HEAD) with its uncommitted changes."
  echo
  echo "| run | final eval line |"
  echo "|---|---|"
  echo "| before | \`$before\` |"
  echo "| after | \`$after\` |"
  echo
  echo "| export file | sha256 before | sha256 after |"
  echo "|---|---|---|"
  for file in $(ls "$scratch/run_before/export"); do
    echo "| $file | $(sha256sum < "$scratch/run_before/export/$file" | cut -c1-16)… | $(sha256sum < "$scratch/run_after/export/$file" | cut -c1-16)… |"
  done
  echo
  if [ "$before" = "$after" ] && diff -rq "$scratch/run_before/export" "$scratch/run_after/export" >/dev/null; then
    echo "Same eval line, byte-identical export."
  else
    echo "**They differ.**"
  fi
} > "$out"
cat "$out"
