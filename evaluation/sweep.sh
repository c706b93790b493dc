#!/bin/bash
# Run several checkpoint studies at once, one process each, and tabulate the pixel check of every checkpoint.
#
#   evaluation/sweep.sh RUNS_FILE OUT_DIR [extra checkpoint_study.py arguments...]
#
# RUNS_FILE has one study per line: NAME EVERY [key=value params overrides...]. Each study writes
# OUT_DIR/NAME.json and OUT_DIR/NAME.log; the table goes to stdout and OUT_DIR/sweep.json. Environment:
# PYTHON (default python3), RUN_LIMIT (seconds per study, default 3600; a study cut short keeps the rows
# it logged). On one GPU, many small studies share it well: evaluation/sweeps/*.txt ran 13 at once on an
# H200 (docs/training.md, Demo quality). Add train.accelerator=gpu to the overrides there.
set -u
RUNS=$1 OUT=$2; shift 2
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONUNBUFFERED=1
while read -r name every rest; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  sets=(); for kv in $rest; do sets+=(--set "$kv"); done
  timeout "${RUN_LIMIT:-3600}" "$PY" evaluation/checkpoint_study.py --every "$every" "${sets[@]}" "$@" \
    --out "$OUT/$name.json" > "$OUT/$name.log" 2>&1 &
done < "$RUNS"
wait
OUT=$OUT "$PY" - <<'PY'
import json, os, pathlib
out_dir = pathlib.Path(os.environ["OUT"])
table = {}
for log in sorted(out_dir.glob("*.log")):
    done = log.with_suffix(".json")
    lines = log.read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.startswith('{"step"')]
    table[log.stem] = json.loads(done.read_text()) if done.exists() else {"rows": rows, "unfinished": lines[-20:]}
(out_dir / "sweep.json").write_text(json.dumps(table, indent=1))
for name, result in table.items():
    for row in result["rows"]:
        acc = " ".join(f"{k[6:-4]}={v:.2f}" for k, v in row.items() if k.startswith("pixel_") and k.endswith("_acc"))
        print(f"{name:<18} {row['step']:>5} {acc} fvd_ref_floor_n={row['fvd_ref_floor_n']:.0f}")
    if "unfinished" in result:
        print(name, "did not finish:", *result["unfinished"][-3:], sep="\n  ")
PY
