"""Scoring anomaly maps against lesion masks: `metrics` (AUPRC, AUROC, Dice..., checked
against scikit-learn in the tests), `scoring` (per-case figures and the evaluation report),
`sets` (case lists built from the shared data). The `uadc evaluate` command is in
`commands/evaluate.py`. Room for the tuning/report split and real-lesion-shape sets."""
