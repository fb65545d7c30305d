#!/usr/bin/env bash
# The width arm of docs/study.md ("Width arm"): the CPU runs it reports, then its tables and
# figures from the stored runs. Run from the repository root:
#
#   bash benchmarks/width_arm.sh run       # the sweeps (resumable: finished runs are skipped; ~9 CPU-hours in all)
#   bash benchmarks/width_arm.sh tables    # docs/study/width/*: the analyses docs/study.md quotes
#   bash benchmarks/width_arm.sh more      # what the doc does not report yet: 1:32 at width 128
#
# DB (default study_width/width.sqlite) and WORKDIR (study_width/runs) may be set in the
# environment; WORKERS (default 2) parallel runs, one torch thread each. Every run id hashes the
# resolved config, so runs shared by several sweeps (e.g. SR-STE 1:16 lr 3e-3 at width 128) train
# once, and the full grids of training/study_width{64,128,256}.yaml reuse them.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PGF=${PGF:-$ROOT/.venv/bin/pgf-sim}
DB=${DB:-study_width/width.sqlite}
WORKDIR=${WORKDIR:-study_width/runs}
C=(--workers "${WORKERS:-2}" --threads 1 --db "$DB" --workdir "$WORKDIR")
LR3='grid.params={schedule.lr: [3.0e-3]}'
SEEDS5='grid.seeds=[0, 1, 2, 3, 4]'

run() {
  # 1:16 at lr 3e-3, 5 seeds, dense / SR-STE / MDGF / MDGF scaled, widths 64 (188 steps) and 128 (750)
  "$PGF" sweep training/study_width64.yaml "${C[@]}" 'grid.patterns=["1:16"]' "$LR3" "$SEEDS5"
  "$PGF" sweep training/study_width128.yaml "${C[@]}" 'grid.patterns=["1:16"]' "$LR3" "$SEEDS5"
  # width 64 at width 128's token budget (750 steps): width apart from budget
  "$PGF" sweep training/study_width64_750.yaml "${C[@]}" 'grid.patterns=["1:16"]' "$LR3" \
    'grid.recipes={sr-ste: {}, mdgf: {}}' 'grid.seeds=[0, 1, 2]'
  # the lr grid {1e-3, 3e-3, 6e-3}: width 64, every recipe, 5 seeds; width 128, SR-STE and MDGF, 3 seeds
  "$PGF" sweep training/study_width64.yaml "${C[@]}" 'grid.patterns=["1:16"]' "$SEEDS5"
  "$PGF" sweep training/study_width128.yaml "${C[@]}" name=study_width128_lr 'grid.patterns=["1:16"]' \
    'grid.params={schedule.lr: [1.0e-3, 3.0e-3, 6.0e-3]}' 'grid.recipes={sr-ste: {}, mdgf: {}}' 'grid.seeds=[0, 1, 2]'
  # 1:32 beside 1:16 (one Holm family)
  "$PGF" sweep training/study_width64.yaml "${C[@]}" name=study_width64_1of32 'grid.patterns=["1:16", "1:32"]' \
    "$LR3" "$SEEDS5"
  # the authors' parametrisation beside pgf_sim's defaults (docs/method.md), width 64, 3 seeds
  "$PGF" sweep training/study_width64.yaml "${C[@]}" name=study_width64_authors 'grid.patterns=["1:16"]' "$LR3" \
    'grid.seeds=[0, 1, 2]' \
    'grid.recipes={sr-ste: {}, mdgf: {}, mdgf-no-finetune: {name: mdgf, finetune_fraction: 0}, mdgf-authors: {name: mdgf, alpha: 2.0e-4, finetune_fraction: 0}, sdgf: {}, sdgf-authors: {name: sdgf, sdgf_frames_fraction: 1.0, sdgf_target: after_window}}'
}

more() {
  # not in docs/study.md yet (about 1 hour on 2 cores): 1:32 at width 128, then
  #   pgf-sim study "$DB" --sweep study_width128_1of32
  "$PGF" sweep training/study_width128.yaml "${C[@]}" name=study_width128_1of32 'grid.patterns=["1:16", "1:32"]' \
    "$LR3" 'grid.recipes={dense: {}, sr-ste: {}, mdgf: {}}' 'grid.seeds=[0, 1, 2]'
}

tables() {
  local out=docs/study/width
  # untuned, validation split: every width and budget at the task's own lr
  "$PGF" study "$DB" --sweep study_width64 --sweep study_width64_750 --sweep study_width128 \
    --fix schedule.lr=0.003 --out "$out/untuned"
  # tuned vs untuned, both judged on the test split (the lr is picked on validation)
  "$PGF" study "$DB" --sweep study_width64 --sweep study_width128_lr --fix schedule.lr=0.003 \
    --tune schedule.lr --out "$out/tuned"
  "$PGF" study "$DB" --sweep study_width64_1of32 --out "$out/1of32"
  "$PGF" study "$DB" --sweep study_width64_authors --out "$out/authors"
}

case "${1:-}" in
  run) run ;;
  more) more ;;
  tables)
    rm -rf docs/study/width && mkdir -p docs/study/width && tables
    # the doc shows the across-sweeps figures; each sweep's own figures are a `pgf-sim study --out` away
    find docs/study/width -name '*.png' ! -name 'across_sweeps.png' -delete ;;
  *) echo "usage: bash benchmarks/width_arm.sh run|more|tables" >&2; exit 2 ;;
esac
