"""Fine-tune a model on loan-officer decisions with a LoRA adapter, once on clean labels and once with a planted
bias, so that ``audit compare`` can show which fine-tune changed the model's treatment of a protected group.

The decisions: the fair-lending suite's applications (a scenario's cases differ only in one protected attribute),
the strongest ``--approve-share`` of them approved (four in five by default: most applications are approved, so
the planted group's declines stand out), ranked by the base model's score of the scenario's baseline applicant,
every applicant of a scenario alike, so a *clean* label depends on the application alone. The *planted* labels are
the same except that every applicant whose name signals the planted group (``--plant race=black``) is declined:
the historical bias of a loan officer. Training uses the last ``--train-scenarios`` scenarios of the suite; audit
the first ones (``audit run --limit``) so the audit's cases are held out from training.

Loss: the logistic loss of the decision score, ``log(1 + exp(-y * s))`` with ``y = +1`` (approve) or ``-1``
(decline) and ``s`` the audit's own decision log-odds (``Adapter.score``, the same prompt and read-out the audit
scores), so the fine-tune moves exactly what the audit measures. LoRA (Hu et al. 2022, ``peft``) on every linear
layer of the decoder, rank ``--rank``; the adapter folder is what ``audit run --model`` reads.

    python examples/finetune/finetune_lora.py --out ft-clean
    python examples/finetune/finetune_lora.py --plant race=black --out ft-planted
    audit run --model ft-clean --limit 6 --out audit-clean    # and the base, and ft-planted
    audit compare audit-base audit-clean audit-planted --out compare
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from audit.errors import AuditError
from audit.models.adapters import make_adapter
from audit.models.loading import load_model
from audit.models.spec import parse_model_spec
from audit.options import DEFAULT_MODEL
from audit.suites.expand import expand_scenario
from audit.suites.loader import load_suite


def labelled_cases(adapter, suite, scenarios, plant: tuple[str, str] | None,
                   approve_share: float = 0.8) -> list[tuple[object, float]]:
    """(encoded case, label +1 approve / -1 decline) for every case of ``scenarios``.

    The loan officer approves the strongest ``approve_share`` of the applications: those whose baseline applicant
    the base model ranks highest among the training scenarios (four in five by default, whatever the base model
    scores), and gives every applicant of a scenario that decision; the planted labels also decline every
    applicant whose name signals the planted group."""
    encoded = {s.id: [adapter.encode(case) for case in expand_scenario(suite, s)] for s in scenarios}
    with torch.no_grad():
        baseline = {s: adapter.score(input_ids=next(e for e in cases if e.case.attribute is None).input_ids[None])
                    .item() for s, cases in encoded.items()}
    ranked = sorted(baseline, key=baseline.get, reverse=True)
    approved = set(ranked[:round(approve_share * len(ranked))])
    data = []
    for scenario, cases in encoded.items():
        approve = scenario in approved
        for case in cases:
            planted = plant is not None and case.case.groups.get(plant[0]) == plant[1]
            data.append((case, -1.0 if planted or not approve else 1.0))
    return data


def finetune(model: str, out: Path, *, suite: str = "fair-lending", plant: tuple[str, str] | None = None,
             train_scenarios: int = 6, approve_share: float = 0.8, epochs: int = 1, rank: int = 8,
             learning_rate: float = 1e-3, seed: int = 0, log=print) -> dict:
    """Train a LoRA adapter of ``model`` on the labelled cases and save it to ``out``; the training record."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    the_suite = load_suite(suite)  # before the model: a bad --suite costs no model load
    loaded = load_model(parse_model_spec(model))
    adapter = make_adapter(loaded, the_suite)
    data = labelled_cases(adapter, the_suite, the_suite.scenarios[-train_scenarios:], plant, approve_share)
    peft_model = get_peft_model(loaded.model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                                                         target_modules="all-linear"))
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate)
    order = random.Random(seed)
    started, losses = time.perf_counter(), []
    for epoch in range(epochs):
        order.shuffle(data)
        total = 0.0
        for encoded, label in data:
            score = adapter.score(input_ids=encoded.input_ids[None])[0]
            loss = torch.nn.functional.softplus(-label * score)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        losses.append(total / len(data))
        log(f"epoch {epoch + 1}/{epochs}: mean logistic loss {losses[-1]:.4f}")
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(out)
    record = {"base_model": model, "suite": suite, "planted": None if plant is None else "=".join(plant),
              "train_scenarios": [s.id for s in the_suite.scenarios[-train_scenarios:]], "cases": len(data),
              "approve_share": approve_share,
              "epochs": epochs, "rank": rank, "learning_rate": learning_rate, "seed": seed, "losses": losses,
              "seconds": round(time.perf_counter() - started, 1)}
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    _point_at_base(out, model)
    return record


def _point_at_base(out: Path, model: str) -> None:
    """adapter_config.json's ``base_model_name_or_path``: the base as ``--model`` names it (an alias or a path),
    so ``audit run --model OUT`` finds it without ``--base-model``."""
    config_path = out / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = str(Path(model).resolve()) if Path(model).exists() else model
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.error = lambda message: parser.exit(2, f"{parser.prog}: error: {message}\n")  # one line, no usage block
    parser.add_argument("--model", default=DEFAULT_MODEL, help="The base model (any audit --model form).")
    parser.add_argument("--suite", default="fair-lending")
    parser.add_argument("--plant", default=None, help="PROPERTY=GROUP whose applicants the labels decline.")
    parser.add_argument("--train-scenarios", type=int, default=6)
    parser.add_argument("--approve-share", type=float, default=0.8,
                        help="Share of the training applications the loan officer approves (the strongest).")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    plant = None
    if args.plant:
        if "=" not in args.plant:
            parser.error(f"--plant: expected PROPERTY=GROUP, got {args.plant!r}")
        plant = tuple(args.plant.split("=", 1))
    if not 0.0 <= args.approve_share <= 1.0:
        parser.error(f"--approve-share: must be from 0 to 1, got {args.approve_share}")
    try:
        record = finetune(args.model, args.out, suite=args.suite, plant=plant, train_scenarios=args.train_scenarios,
                          approve_share=args.approve_share, epochs=args.epochs, rank=args.rank,
                          learning_rate=args.learning_rate, seed=args.seed)
    except AuditError as exc:  # --model or --suite the audit itself would refuse: its one-line message
        parser.error(str(exc))
    print(f"{args.out}: {record['cases']} cases, {record['epochs']} epochs, {record['seconds']} s")


if __name__ == "__main__":
    main()
