"""Benchmark suites (`python -m bertjax.benchmark`): GLUE, the Korean NSMC + KLUE suite or a suite file, run for one
or more models through the fine-tuning machinery, reported as the field reports them (docs/benchmark.md).

suites.py      the tasks, their recipes and metrics, with the protocol's sources; suite files
references.py  published rows, labelled as such
runner.py      the runs: planned, configured, executed in sub-workdirs, skipped when finished; progress and ETA
report.py      one number per model and task; results.json, results.md, results.png
suite_run.py   the command's work: checks first, then the runs in order
"""
