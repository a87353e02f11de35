"""Linear probes with control tasks: is an attribute linearly decodable from a layer's hidden states?

Alain & Bengio (2017), "Understanding intermediate layers using linear
classifier probes"; Hewitt & Liang (2019), "Designing and Interpreting Probes
with Control Tasks". At every depth a multinomial logistic regression
(scikit-learn, standardised features) predicts the label from the hidden
states; accuracy is out-of-fold under stratified k-fold grouped by scenario,
so a scenario never sits in both the training and the test folds.

A probe can succeed by memorising word identities rather than finding an
attribute the model represents. The control task gives every word type (here:
every value text, e.g. each applicant name) a random label drawn from the
task's label distribution, fixed for the run, and trains the same probe on it:

    selectivity = accuracy(task) - accuracy(control)

High accuracy with high selectivity says the representation carries the
attribute beyond the identity of the words; high accuracy with low
selectivity says the probe is only reading which words were there. The
majority-class share is the floor either way. Intervals: Wilson 95 % for
accuracies (out-of-fold predictions), bootstrap 95 % over scenarios for the
selectivity.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.base import clone
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from explainers.intervals import bootstrap_ci, wilson

MAX_FOLDS = 3  # grouped by scenario; 3 keeps 31 depths x 2 tasks of fits within the default time budget
REGULARISATION_C = 0.1


def control_labels(labels: list[str], word_types: list[str], seed: int) -> list[str]:
    """Hewitt & Liang's control task: one random label per word type, drawn from the empirical label distribution."""
    rng = np.random.default_rng(seed)
    types = list(dict.fromkeys(word_types))
    drawn = rng.choice(np.asarray(labels, dtype=object), size=len(types), replace=True)
    mapping = dict(zip(types, drawn))
    return [str(mapping[t]) for t in word_types]


def _out_of_fold_correct(features: np.ndarray, labels: np.ndarray, splits, seed: int) -> np.ndarray:
    """Out-of-fold correctness of the probe. A fold whose training scenarios hold one class (a class that occurs in
    one scenario only, after grouping by scenario) gets the constant probe of that class, which is what it learns
    there (scikit-learn's LogisticRegression refuses one class)."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=REGULARISATION_C, max_iter=2000, random_state=seed))
    predicted = np.empty(len(labels), dtype=labels.dtype)
    for train, test in splits:
        seen = np.unique(labels[train])
        if len(seen) == 1:
            predicted[test] = seen[0]
        else:
            predicted[test] = clone(probe).fit(features[train], labels[train]).predict(features[test])
    return (predicted == labels).astype(float)


def probe_layers(states: np.ndarray, labels: list[str], groups: list[str], word_types: list[str], *,
                 seed: int, confidence: float = 0.95, on_depth: Callable[[], None] | None = None) -> dict[str, Any]:
    """Probe accuracy, control accuracy and selectivity at every depth of ``states`` [n, depths, d];
    ``on_depth()`` after each depth probed (progress; not called when the probe cannot be evaluated).

    BLAS runs single-threaded here: after a forward pass torch's OpenMP threads keep spinning, and BLAS threads
    competing with them made these small fits 10x slower (135 s against 13 s for the bundled suite on SmolLM2).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _probe_layers(states, labels, groups, word_types, seed=seed, confidence=confidence, on_depth=on_depth)


def _probe_layers(states: np.ndarray, labels: list[str], groups: list[str], word_types: list[str], *,
                  seed: int, confidence: float, on_depth: Callable[[], None] | None = None) -> dict[str, Any]:
    y = np.asarray(labels, dtype=object).astype(str)
    classes, counts = np.unique(y, return_counts=True)
    group_ids = np.asarray(groups)
    n_groups = len(set(groups))
    if len(classes) < 2 or n_groups < 2 or counts.min() < 2:
        return {"evaluated": False, "why": f"{len(classes)} class(es), {n_groups} scenario(s), smallest class "
                f"{int(counts.min())} case(s): a probe needs two classes of at least two cases and two scenarios",
                "classes": {str(c): int(k) for c, k in zip(classes, counts)}}
    folds = min(MAX_FOLDS, n_groups, int(counts.min()))
    splits = list(StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(
        np.zeros(len(y)), y, group_ids))
    control = np.asarray(control_labels(list(y), word_types, seed)).astype(str)
    unique_groups = list(dict.fromkeys(groups))
    members = [np.flatnonzero(group_ids == g) for g in unique_groups]
    layers = []
    for depth in range(states.shape[1]):
        task_correct = _out_of_fold_correct(states[:, depth], y, splits, seed)
        control_correct = (_out_of_fold_correct(states[:, depth], control, splits, seed)
                           if len(set(control)) > 1 else np.ones(len(y)))
        difference = np.array([task_correct[m].mean() - control_correct[m].mean() for m in members])
        layers.append({
            "depth": depth,
            "accuracy": float(task_correct.mean()),
            "accuracy_ci": wilson(int(task_correct.sum()), len(y), confidence),
            "control_accuracy": float(control_correct.mean()),
            "control_ci": wilson(int(control_correct.sum()), len(y), confidence),
            "selectivity": float(task_correct.mean() - control_correct.mean()),
            "selectivity_ci": bootstrap_ci(len(members), lambda idx: difference[idx].mean(-1), seed=seed,
                                           n_resamples=2000, confidence=confidence),
        })
        if on_depth is not None:
            on_depth()
    best = max(layers, key=lambda layer: layer["selectivity"])
    return {
        "evaluated": True,
        "n_cases": len(y),
        "n_scenarios": n_groups,
        "folds": folds,
        "classes": {str(c): int(k) for c, k in zip(classes, counts)},
        "majority": float(counts.max() / counts.sum()),
        "layers": layers,
        "most_selective_depth": best["depth"],
    }
