"""The modules of bench/time_to_quality.py: tables, records, data, bertjax_runs, hf_runner, report."""
