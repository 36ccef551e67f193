"""Loading the models a job trains with: the policy (quantised for QLoRA when asked, wrapped by the tuner, with the
CPU fast paths), a frozen reference, a teacher. Every method loads through here, so every loading flag
(--quant_method, --attn_impl, --device_map, --torch_dtype, --gradient_checkpointing) means the same everywhere."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmforge.train.job import Job


def load_policy(job: Job, fast_paths: bool = False, head: dict[str, Any] | None = None) -> Any:
    """The model to train. `fast_paths`: our own trainer's CPU kernels (fused LoRA, lane dropout, per-sequence
    attention), which trl's trainers do not take (they pad, and run their own forwards). `head`: config fields of
    a task head (num_labels, problem_type, id2label)."""
    from lmforge.models.loader import load_model
    from lmforge.tuners.quant import quantization_config
    from lmforge.tuners.table import apply_tuner

    a = job.args
    qcfg = quantization_config(a.tuner, job.precision.dtype)
    attn = a.model.attn_impl or (training_attention(job.on_gpu) if fast_paths else None)
    model = load_model(
        job.setup.model_dir,
        dtype=job.precision.dtype,
        trust_remote_code=a.model.trust_remote_code,
        attn_impl=attn,
        device_map=a.model.device_map or ("cpu" if qcfg else None),
        task=job.task.name,
        **({"quantization_config": qcfg} if qcfg else {}),
        **(head or {}),
    )
    if qcfg is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=job.gradient_checkpointing)
    # a KV cache in a training forward makes transformers skip the packed-sequence mask of padding-free batches
    model.config.use_cache = False
    if (
        getattr(model.config, "pad_token_id", None) is None
    ):  # a classifier head finds each row's last token by the pad id
        model.config.pad_token_id = job.setup.tokenizer.pad_token_id
    from lmforge.multimodal.tuning import freeze_parts, media_tuner_flags

    # vision-language models: the tuner sees only the parts --freeze_vit/--freeze_aligner/--freeze_llm leave open
    model = apply_tuner(
        model, media_tuner_flags(model, a.tuner, job.setup.template), job.task, job.gradient_checkpointing
    )
    freeze_parts(model, a.tuner, job.setup.template, job.tuner.trains_weights)
    if fast_paths and not job.on_gpu:
        from lmforge.train.distributed import partitions_params
        from lmforge.tuners.dropout import use_lane_dropout
        from lmforge.tuners.fused_lora import use_fused_lora

        use_lane_dropout(model)
        if not partitions_params(a.train.deepspeed):  # the fused forward reads weights ZeRO-3 would shard
            use_fused_lora(model)
    return model


def training_attention(on_gpu: bool) -> str:
    """sdpa on GPU; on CPU our per-sequence attention (train/attention.py explains the measurements)."""
    if on_gpu:
        return "sdpa"
    from lmforge.train.attention import register

    return register()


def load_frozen(job: Job, model: str | None, adapters: list[str] = ()) -> Any:
    """A frozen model for reference or teaching: --ref_model/--teacher_model (default: the policy's base), with
    LoRA adapters merged in."""
    from lmforge.models.loader import load_model, resolve_model_dir

    a = job.args.model
    path = resolve_model_dir(model, use_hf=a.use_hf, token=a.hub_token) if model else job.setup.model_dir
    frozen = load_model(path, dtype=job.precision.dtype, trust_remote_code=a.trust_remote_code, task=job.task.name)
    for adapter in adapters:
        from peft import PeftModel

        frozen = PeftModel.from_pretrained(frozen, adapter).merge_and_unload()
    return frozen.eval().requires_grad_(False)
