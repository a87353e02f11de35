"""Logit lens of the decision score: where in the network the Yes/No decision forms.

nostalgebraist (2020), "interpreting GPT: the logit lens"; Belrose et al. 2023
("Eliciting Latent Predictions from Transformers with the Tuned Lens") for its
limits. The hidden state h_l at the read-out position after layer l is read
through the model's own final norm and output head, as if the network ended
there:

    causal LM:   z_l = W_U norm(h_l),   s_l = logsumexp(z_l[V+]) - logsumexp(z_l[V-])
    classifier:  z_l = head(h_l[read-out]),   s_l = z_l[+] - z_l[-]

where W_U is followed by whatever the family does to its logits before the softmax (``logit_transform``:
Granite divides them by ``logits_scaling``, Cohere multiplies them by ``logit_scale``, Gemma 2 and 3 soft-cap
them, c tanh(z / c)), and a classifier's head is whatever its architecture puts after the last
layer: BERT/ALBERT's pooler then linear layer, DeBERTa's context pooler then
linear layer, DistilBERT's pre-classifier, ReLU and linear layer, the
two-layer heads of RoBERTa/ELECTRA/MPNet that read the first token, or a
decoder classifier's final norm then ``score`` at the last token

(the softmax normaliser cancels in the log-odds, so only the verbaliser's rows
of W_U are needed). At the last layer s_L is the decision score itself; the
layer at which s_l settles on its final side is where the decision forms.
Early layers were not trained to be read this way, so s_l there is a
description, not a calibrated score.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch


# Llama and most decoders; Phi-1/2; GPT-2, Falcon, Bloom; OPT; GPT-NeoX, Pythia; MPT
FINAL_NORMS = ("norm", "final_layernorm", "ln_f", "decoder.final_layer_norm", "final_layer_norm", "norm_f")


class LensUnavailable(Exception):
    """The architecture has no final norm / head the lens knows how to apply."""


def _module(root, names: tuple[str, ...]):
    for name in names:
        module = root
        for part in name.split("."):
            module = getattr(module, part, None)
        if module is not None:
            return module
    return None


def logit_transform(config) -> Callable[[torch.Tensor], torch.Tensor]:
    """What the family's causal-LM head does to W_U h before the softmax (module docstring); identity for most."""
    config = getattr(config, "text_config", None) or config
    scaling = getattr(config, "logits_scaling", None)  # Granite
    scale = getattr(config, "logit_scale", None)  # Cohere
    cap = getattr(config, "final_logit_softcapping", None)  # Gemma 2, Gemma 3

    def transform(logits: torch.Tensor) -> torch.Tensor:
        if scaling:
            logits = logits / scaling
        if scale:
            logits = logits * scale
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    return transform


def decision_reader(adapter) -> Callable[[np.ndarray], np.ndarray]:
    """A function mapping hidden states [n, d] at the read-out position to lens decision scores [n]."""
    model = adapter.model
    base = getattr(model, model.base_model_prefix, model)
    if adapter.family == "causal-lm":
        norm = _module(base, FINAL_NORMS)
        head = model.get_output_embeddings()
        if norm is None or head is None:
            raise LensUnavailable(f"no final norm or output head found on {type(model).__name__}")
        favourable = sorted(adapter.verbaliser.favourable)
        unfavourable = sorted(adapter.verbaliser.unfavourable)
        rows = favourable + unfavourable
        weight = head.weight[rows]
        bias = head.bias[rows] if getattr(head, "bias", None) is not None else None
        transform = logit_transform(model.config)

        def read(states: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                hidden = torch.as_tensor(states, device=weight.device).to(weight.dtype)
                logits = transform(torch.nn.functional.linear(norm(hidden), weight, bias).float())
                n = len(favourable)
                return (logits[:, :n].logsumexp(-1) - logits[:, n:].logsumexp(-1)).cpu().numpy()

        return read
    head = classifier_head(adapter)

    def read_classifier(states: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            hidden = torch.as_tensor(states, device=adapter.device).to(next(model.parameters()).dtype)
            logits = head(hidden).float()
            return (logits[:, adapter.favourable_index] - logits[:, adapter.unfavourable_index]).cpu().numpy()

    return read_classifier


def classifier_head(adapter) -> Callable[[torch.Tensor], torch.Tensor]:
    """The classifier's head as a map from read-out states [n, d] to label logits [n, labels] (module docstring)."""
    model = adapter.model
    base = getattr(model, model.base_model_prefix, model)
    if adapter.reads_last_token:
        norm, score = _module(base, FINAL_NORMS), _module(model, ("score",))
        if norm is None:
            raise LensUnavailable(f"no final norm found on {type(model).__name__}")
        return lambda hidden: score(norm(hidden))
    head = _module(model, ("classifier",))
    if head is None:
        raise LensUnavailable(f"no classifier head found on {type(model).__name__}")
    pre_classifier = _module(model, ("pre_classifier",))
    pooler = _module(base, ("pooler",))
    if pooler is None:
        pooler = _module(model, ("pooler",))  # DeBERTa's context pooler sits on the classifier, not the encoder
    if pre_classifier is not None:
        return lambda hidden: head(torch.relu(pre_classifier(hidden)))
    if pooler is not None:
        return lambda hidden: head(pooler(hidden[:, None, :]))
    return lambda hidden: head(hidden[:, None, :])  # the head reads the first token of a sequence


def lens_scores(adapter, answer_states: dict[str, np.ndarray],
                on_case: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Per case id, the lens decision score after the embeddings and after every layer ([layers + 1]);
    ``on_case()`` after each case (progress)."""
    read = decision_reader(adapter)
    scores = {}
    for case_id, states in answer_states.items():
        scores[case_id] = read(states).tolist()
        if on_case is not None:
            on_case()
    return scores


def forming_layer(curve: list[float]) -> int | None:
    """The first depth from which the lens score stays on the side of the final decision (None if it never does)."""
    final = np.sign(curve[-1])
    if final == 0:
        return None
    depth = len(curve) - 1
    while depth > 0 and np.sign(curve[depth - 1]) == final:
        depth -= 1
    return depth
