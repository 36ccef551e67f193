"""`lmforge rlhf --rlhf_type dpo|kto|cpo|simpo|orpo|rm|grpo|gkd`: one entry each in the method table, on trl's
trainers (train/trl_api.py holds every trl import; PPO is train/ppo.py).

An entry is a `TrlSpec`: which trl trainer, how a standard row becomes that trainer's row (train/rows.py), the
method's own config fields, its default beta, whether it takes a reference model, and any other trainer inputs. The
model is loaded and wrapped by the shared path (train/loading.py), so QLoRA, --attn_impl, --device_map, LoRA+,
GaLore and LISA mean the same as in sft; trl gets the wrapped model and no peft_config.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError
from lmforge.thirdparty import grpo_vl_processor
from lmforge.train import rows
from lmforge.train.methods import METHODS, OWN_TRAINER_ONLY, register_method
from lmforge.train.vllm_rollout import vllm_rollout

if TYPE_CHECKING:
    from lmforge.args.parser import Args
    from lmforge.train.job import Job


@dataclass(frozen=True)
class TrlSpec:
    trainer: str  # a key of trl_api.trainer_classes
    to_row: Callable[[dict, Any, str], dict]
    config: Callable[[Job], dict[str, Any]]  # the method's own config fields (beta is added from default_beta)
    default_beta: float | None = 0.1  # None: the method has no beta
    reference: bool = False  # takes ref_model (--ref_model / --ref_adapters; else the base with adapters off)
    inputs: Callable[[Job], dict[str, Any]] | None = None  # more trainer inputs: teacher, reward functions
    images: bool = False  # trl's trainer takes a processor and rows with images (its vision collator)
    processor: Callable[[Any], Any] | None = None  # fits the stock processor to the trainer (lmforge.thirdparty)
    check_rows: Callable[[Job, int], None] | None = None  # the training row count, checked before the model loads
    # where trl's trainer has no image path: our own build for vision-language models, (job, beta) -> trainer
    vision: Callable[[Job, float | None], Any] | None = None


def beta(job: Job, spec: TrlSpec) -> float | None:
    if spec.default_beta is None:
        return None
    return job.args.rlhf.beta if job.args.rlhf.beta is not None else spec.default_beta


def build(job: Job) -> Any:
    """rows -> model -> trl trainer, with our atomic checkpoints mixed in (no __init__ bypassed)."""
    import warnings

    from lmforge.thirdparty import with_checkpoint_hooks
    from lmforge.train.job import record
    from lmforge.train.loading import load_frozen, load_policy
    from lmforge.train.trainer_args import callbacks, finish, optimizer, training_kwargs
    from lmforge.train.trl_api import trainer_classes

    # trl's notices about its own defaults and experimental hooks (rollout_func) are not the user's to act on
    warnings.filterwarnings("ignore", category=UserWarning, module="trl")
    spec: TrlSpec = job.method.extras["trl"]
    template, name = job.setup.template, job.method.name
    if spec.vision is not None and getattr(template, "takes_media", False):
        b = beta(job, spec)
        record(job, {"resolved_beta": b})
        return spec.vision(job, b)
    train_ds = rows.convert(job.data.train, spec.to_row, template, name)
    val_ds = rows.convert(job.data.val, spec.to_row, template, name)
    if spec.check_rows is not None:
        spec.check_rows(job, len(train_ds))
    processing = _processing_class(job, spec)  # a vision-language model: the processor (checked before loading)
    model = load_policy(job)
    b = beta(job, spec)
    record(job, {"resolved_beta": b})
    config_cls, trainer_cls = trainer_classes(spec.trainer)
    own = spec.config(job)
    config = config_cls(**training_kwargs(job, val_ds is not None), **({"beta": b} if b is not None else {}), **own)
    kwargs: dict[str, Any] = {
        "model": model,
        "args": config,
        "train_dataset": train_ds,
        "eval_dataset": val_ds,
        "processing_class": processing,
        "callbacks": callbacks(job),
        "optimizers": (optimizer(job, model), None),
    }
    r = job.args.rlhf
    if spec.reference:
        kwargs["ref_model"] = load_frozen(job, r.ref_model, r.ref_adapters) if r.ref_model or r.ref_adapters else None
    if spec.inputs is not None:
        kwargs.update(spec.inputs(job))
    trainer = with_checkpoint_hooks(trainer_cls)(**kwargs)
    print(f"[lmforge] {name} on {len(train_ds)} rows")
    return finish(trainer, job)


def _processing_class(job: Job, spec: TrlSpec) -> Any:
    """The tokenizer; for a vision-language model the stock processor (trl's vision collator runs it on each
    batch, images included) with the model's chat template. DPO, KTO and GRPO take images here (GRPO's rollouts
    through `EngineRollout`), ORPO through its own `vision` build."""
    template = job.setup.template
    if not getattr(template, "takes_media", False):
        return job.setup.tokenizer
    if not spec.images:
        specs = {n: m.extras.get("trl") for n, m in METHODS.items() if m.stage == "rlhf"}
        takes = ", ".join(n for n, s in specs.items() if s is not None and (s.images or s.vision))
        raise UserError(
            f"--rlhf_type {job.method.name} does not take vision-language models in this lmforge version",
            hint=f"use --rlhf_type {takes}",
        )
    processor = template.processor
    processor.chat_template = processor.chat_template or template.jinja
    return spec.processor(processor) if spec.processor is not None else processor


def trl_method(
    name: str, spec: TrlSpec, uses: set[str], task: str = "causal_lm", check: Callable[[Args], None] | None = None
) -> None:
    """Register an rlhf type; rlhf flags outside `uses` and our-trainer-only flags are refused when set."""
    unsupported = OWN_TRAINER_ONLY | {"enable_thinking", "trainer"}
    if "loss_type" not in uses:  # a TrainArgs flag: sft's plug-in loss, the trl variant here
        unsupported |= {"loss_type"}
    register_method(
        name,
        stage="rlhf",
        task=task,
        unsupported=unsupported,
        rlhf_uses=frozenset(uses),
        check=check,
        extras={"trl": spec},
    )(build)


def _loss_types(job: Job, default: str) -> dict[str, Any]:
    loss_type, rpo_alpha = job.args.train.loss_type, job.args.rlhf.rpo_alpha
    losses = [loss_type or default]
    if rpo_alpha is not None:  # RPO: DPO plus an NLL term on the chosen answer
        return {"loss_type": [*losses, "sft"], "loss_weights": [1.0, rpo_alpha]}
    return {"loss_type": losses} if loss_type else {}


def _max_length(job: Job, default: int | None = None) -> int | None:
    return job.args.template.max_length or default


def _cpo(job: Job, simpo: bool) -> dict[str, Any]:
    r = job.args.rlhf
    return dict(
        label_smoothing=r.label_smoothing,
        max_length=_max_length(job, 1024),
        max_completion_length=r.max_completion_length,
        simpo_gamma=r.simpo_gamma,
        loss_type="simpo" if simpo else (job.args.train.loss_type or "sigmoid"),
        cpo_alpha=0.0 if simpo and "cpo_alpha" not in job.explicit else r.cpo_alpha,
    )


def _grpo(job: Job) -> dict[str, Any]:
    r, t = job.args.rlhf, job.args.train
    return dict(
        num_generations=r.num_generations,
        max_completion_length=r.max_completion_length,
        temperature=r.temperature,
        top_p=r.top_p,
        top_k=r.top_k,
        use_vllm=r.use_vllm,
        **(vllm_rollout(job) if r.use_vllm else {}),
        **({"loss_type": t.loss_type} if t.loss_type else {}),
        log_completions=False,  # --log_completions writes completions.jsonl itself (_logged)
        generation_batch_size=_generation_batch(job),
        reward_weights=r.reward_weights or None,
    )


def _generation_batch(job: Job) -> int:
    """Completions per generation: trl samples this many / --num_generations distinct prompts for each."""
    return math.lcm(job.args.train.per_device_train_batch_size * job.grad_accum, job.args.rlhf.num_generations)


def _check_grpo_rows(job: Job, n_rows: int) -> None:
    """trl 1.16's RepeatSampler drops a generation batch it cannot fill with distinct prompts: with fewer rows
    than one batch needs, training would stop at step 0 without a word."""
    prompts, t = _generation_batch(job) // job.args.rlhf.num_generations, job.args.train
    if n_rows < prompts:
        raise UserError(
            f"--per_device_train_batch_size {t.per_device_train_batch_size} x --gradient_accumulation_steps "
            f"{job.grad_accum} / --num_generations {job.args.rlhf.num_generations} needs {prompts} distinct prompts "
            f"a step, the training set has {n_rows}: GRPO would train no step",
            hint="lower --per_device_train_batch_size or --gradient_accumulation_steps, or add rows",
        )
    if getattr(job.setup.template, "takes_media", False) and (job.args.rlhf.use_vllm or t.deepspeed):
        # trl's own generation path renders images itself; a batch mixing rows with and without images fails
        # inside trl 1.16's forward (seen on CPU): lmforge's engine rollouts are the tested path
        flag = "--use_vllm" if job.args.rlhf.use_vllm else "--deepspeed"
        raise UserError(
            f"{flag}: GRPO on a vision-language model rolls out through lmforge's engine in this lmforge version",
            hint=f"drop {flag}",
        )


def _grpo_inputs(job: Job) -> dict[str, Any]:
    from lmforge.train.rewards import resolve_rewards

    fns = resolve_rewards(job.args.rlhf.reward_funcs, job.args.rlhf)
    inputs: dict[str, Any] = {"reward_funcs": _logged(fns, job.run_dir) if job.args.rlhf.log_completions else fns}
    # rollouts through our engine (the sampling code of infer, deploy and PPO), except where trl must gather the
    # weights first (ZeRO-3) or generates with vLLM itself
    if not job.args.rlhf.use_vllm and not job.args.train.deepspeed:
        inputs["rollout_func"] = EngineRollout(job)
    return inputs


class EngineRollout:
    """trl's GRPO `rollout_func` (checked against trl 1.16): prompts (message lists, already repeated
    num_generations times by trl's sampler) -> prompt ids, completion ids (up to and including the stop token)."""

    def __init__(self, job: Job):
        self.template, self.r = job.setup.template, job.args.rlhf
        self.engine: Any = None

    def __call__(self, prompts: list, trainer: Any) -> dict[str, Any]:
        from lmforge.infer.engine import SamplingConfig
        from lmforge.infer.pt import PtEngine

        model = trainer.accelerator.unwrap_model(trainer.model)
        if self.engine is None or self.engine.model is not model:
            self.engine = PtEngine(model, self.template, max_batch_size=max(16, len(prompts)))
        if getattr(self.template, "takes_media", False):
            ids = [_media_prompt(self.engine.frontend, p) for p in prompts]
        else:
            ids = [self.engine.frontend.prompt_ids(p) for p in prompts]
        r = self.r
        cfg = SamplingConfig(r.max_completion_length, r.temperature, top_p=r.top_p, top_k=r.top_k)
        done = self.engine.generate(ids, cfg)
        ids = [getattr(p, "token_ids", p) for p in ids]
        return {"prompt_ids": ids, "completion_ids": [c.token_ids for c in done], "logprobs": None}


def _media_prompt(frontend: Any, prompt: list[dict]) -> Any:
    """A prompt of a vision-language run, as trl passes it (content blocks, `{"type": "image", "image": src}`
    filled from the row's images) -> lmforge's `<image>` tags and sources -> the engine's MediaPrompt: the ids
    carry each image's placeholder expanded to the processor's token count (trl's training forward takes them
    with the processor's pixels), and the rollout sees the pixels."""
    from lmforge.infer.media import media_prompt
    from lmforge.multimodal.parts import parts_to_text

    msgs, images = [], []
    for m in prompt:
        content = m.get("content")
        if isinstance(content, list):
            text, media = parts_to_text(content)
            images += [src for kind, src in media if kind == "image"]
            m = {**m, "content": text}
        msgs.append(m)
    return media_prompt(frontend, msgs, images)


def _gkd_inputs(job: Job) -> dict[str, Any]:
    from lmforge.train.loading import load_frozen

    return {"teacher_model": load_frozen(job, job.args.rlhf.teacher_model)}


def _check_grpo(args: Args) -> None:
    """The flag rules (args/rules.py) cannot ask torch for a GPU; this runs before the model loads."""
    import torch

    if args.rlhf.use_vllm and not torch.cuda.is_available():
        raise UserError("--use_vllm needs the vllm package and a CUDA GPU", hint="drop it: rollouts use PyTorch")


def _orpo_vision(job: Job, b: float | None) -> Any:
    from lmforge.train.orpo import build as orpo_build

    return orpo_build(job, b)  # ORPO has a default beta: never None here


_PAIR = {"beta", "loss_type", "label_smoothing"}
trl_method(
    "dpo",
    TrlSpec(
        "dpo",
        rows.preference,
        lambda j: dict(
            label_smoothing=j.args.rlhf.label_smoothing, max_length=_max_length(j), **_loss_types(j, "sigmoid")
        ),
        reference=True,
        images=True,
    ),
    _PAIR | {"rpo_alpha", "ref_model", "ref_adapters"},
)
trl_method(
    "kto",
    TrlSpec(
        "kto",
        rows.unpaired,
        lambda j: dict(
            desirable_weight=j.args.rlhf.desirable_weight,
            undesirable_weight=j.args.rlhf.undesirable_weight,
            max_length=_max_length(j),
            **({"loss_type": j.args.train.loss_type} if j.args.train.loss_type else {}),
        ),
        reference=True,
        images=True,
    ),
    {"beta", "loss_type", "desirable_weight", "undesirable_weight", "ref_model", "ref_adapters"},
)
_CPO_FLAGS = _PAIR | {"cpo_alpha", "simpo_gamma", "max_completion_length"}
trl_method("cpo", TrlSpec("cpo", rows.preference, lambda j: _cpo(j, simpo=False)), _CPO_FLAGS)
trl_method("simpo", TrlSpec("cpo", rows.preference, lambda j: _cpo(j, simpo=True), default_beta=2.0), _CPO_FLAGS)
trl_method(
    "orpo",
    TrlSpec(
        "orpo",
        rows.preference,
        lambda j: dict(max_length=_max_length(j, 1024), max_completion_length=j.args.rlhf.max_completion_length),
        vision=_orpo_vision,
    ),
    {"beta", "max_completion_length"},
)
trl_method(
    "rm",
    TrlSpec(
        "rm",
        rows.preference,
        lambda j: dict(max_length=_max_length(j), center_rewards_coefficient=j.args.rlhf.center_rewards_coefficient),
        default_beta=None,
    ),
    {"center_rewards_coefficient"},
    task="reward",
)
trl_method(
    "grpo",
    TrlSpec(
        "grpo",
        rows.prompt_with_images,
        _grpo,
        default_beta=0.04,
        inputs=_grpo_inputs,
        images=True,
        processor=grpo_vl_processor,
        check_rows=_check_grpo_rows,
    ),
    {"beta", "loss_type", "num_generations", "max_completion_length", "temperature", "reward_funcs", "reward_weights"}
    | {"top_p", "top_k", "use_vllm", "log_completions", "soft_max_length", "soft_cache_length"},
    check=_check_grpo,
)
trl_method(
    "gkd",
    TrlSpec(
        "gkd",
        rows.conversation,
        lambda j: dict(
            lmbda=j.args.rlhf.lmbda,
            temperature=j.args.rlhf.temperature,
            max_new_tokens=j.args.rlhf.max_completion_length,
            max_length=_max_length(j),
        ),
        default_beta=0.5,
        inputs=_gkd_inputs,
    ),
    {"beta", "teacher_model", "lmbda", "temperature", "max_completion_length"},
)


def _logged(fns: list, run_dir: Path) -> list:
    """--log_completions: every sampled completion with its rewards, beside logging.jsonl."""
    path = run_dir / "completions.jsonl"

    def logged(fn: Any) -> Any:
        def wrapped(prompts: list, completions: list, **kw: Any) -> list[float]:
            scores = fn(completions, prompts=prompts, **kw)
            state = kw.get("trainer_state")
            step = state.global_step if state else None
            with path.open("a", encoding="utf-8") as f:
                for p, c, s in zip(prompts, completions, scores):
                    line = {"step": step, "reward_func": fn.__name__, "prompt": p, "completion": c, "reward": s}
                    f.write(json.dumps(line, ensure_ascii=False) + "\n")
            return scores

        wrapped.__name__ = fn.__name__
        return wrapped

    return [logged(f) for f in fns]
