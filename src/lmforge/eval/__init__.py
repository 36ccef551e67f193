"""`lmforge eval`: evaluation sets (datasets.py), graders (scorers.py), the engine or server the rows run on
(backends.py), the checks made before a model loads (plan.py), outputs in EvalScope's layout (report.py)."""
