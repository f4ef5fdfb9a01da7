"""Evaluation: retrieval (ranx), plausibility and faithfulness of rationales, comparisons and plots.

Modules:

* ``retrieval``: qrels, runs (dense, BM25) over the article or corpus pool, ranx metrics;
* ``cache``: passage vectors cached per (model fingerprint, split, data config), resumable;
* ``stats``: paired bootstrap CIs, randomisation tests, mean ± std over seeds;
* ``attribution``: words (merged wordpieces), CLS attention, gradient x input, random scores;
* ``plausibility``: ERASER AUPRC, token F1 and IOU F1 of attention against human evidence;
* ``faithfulness``: ERASER comprehensiveness / sufficiency (AOPC) with cos(q, d), and the paper's variants;
* ``explanations``: base-rate-aware span metrics; ``two_stage``: reader re-ranking of a first stage.

These are measurement tools (the trainers use them for validation); the evaluation *runner* and its
report are in ``cera_rag.experiments``.
"""
