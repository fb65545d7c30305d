#!/usr/bin/env bash
# Regenerate the README's account of the default run and its figures from a real run, so they
# cannot drift from what the code does. Run from the repository root:
#
#   bash benchmarks/regenerate_docs.sh              # runs `pgf-sim run` in ./docs_run/ (~15 min on 2 cores), then writes
#   bash benchmarks/regenerate_docs.sh DIR          # reuses DIR/pgf_results.sqlite (and DIR/runs) of an earlier run
#
# Writes: the tables between the README's `default-answer` markers (benchmarks/readme_answer.py),
# docs/report_first_screen.png (the report's first screen, headless Chromium, 1400 x 1000),
# docs/report_pareto_flex_nm_deploy.png and docs/report_training_curves.png (the report's own
# figure files). Needs Chromium (`apt-get install chromium`) for the figures.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
DIR=${1:-docs_run}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
if [ ! -f "$DIR/pgf_results.sqlite" ]; then
  (cd "$DIR" && "$PY" -m pgf_sim run)
fi
"$PY" "$ROOT/benchmarks/readme_answer.py" --db "$DIR/pgf_results.sqlite" > "$DIR/answer.md"
"$PY" - "$ROOT/README.md" "$DIR/answer.md" <<'EOF'
import sys
from pathlib import Path

readme, answer = Path(sys.argv[1]), Path(sys.argv[2]).read_text().strip()
text = readme.read_text()
start, end = "<!-- default-answer:start (benchmarks/regenerate_docs.sh) -->", "<!-- default-answer:end -->"
if start not in text or end not in text:
    raise SystemExit(f"{readme}: the default-answer markers are missing")
head, rest = text.split(start, 1)
readme.write_text(head + start + "\n" + answer + "\n" + end + rest.split(end, 1)[1])
print(f"wrote the default answer into {readme}")
EOF
(cd "$DIR" && "$PY" -m pgf_sim report --db pgf_results.sqlite --out report.html --workdir runs)
CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$CHROME" ]; then
  echo "no Chromium: the screenshot and figure files were not regenerated" >&2
  exit 1
fi
"$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,1000 \
  --screenshot="$ROOT/docs/report_first_screen.png" "file://$DIR/report.html" 2>/dev/null
cp "$(ls "$DIR"/report_figures/*_pareto_deploy_fused_flex_nm_systolic.png | head -1)" "$ROOT/docs/report_pareto_flex_nm_deploy.png"
cp "$(ls "$DIR"/report_figures/*_training_curves.png | head -1)" "$ROOT/docs/report_training_curves.png"
echo "wrote docs/report_first_screen.png, docs/report_pareto_flex_nm_deploy.png, docs/report_training_curves.png"
