"""LoRA and full fine-tuning setup, with peft's own API only (transformers' adapter methods need a newer peft)."""

from __future__ import annotations

from typing import Any

from lmforge.errors import UserError


def lora_config(tuner: Any) -> Any:
    from peft import LoraConfig, TaskType

    targets: Any = tuner.target_regex or tuner.target_modules
    if isinstance(targets, list) and targets == ["all-linear"]:
        targets = "all-linear"  # every nn.Linear but the output layer
    return LoraConfig(
        r=tuner.lora_rank,
        lora_alpha=tuner.lora_alpha,
        lora_dropout=tuner.lora_dropout,
        bias=tuner.lora_bias,
        target_modules=targets,
        modules_to_save=tuner.modules_to_save or None,
        task_type=TaskType.CAUSAL_LM,
    )


def prepare_model(model: Any, tuner: Any, gradient_checkpointing: bool) -> Any:
    """Wrap the model for the chosen tuner; print trainable/total parameter counts."""
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if tuner.tuner_type == "full":
        if tuner.adapters:
            raise UserError("--adapters with --tuner_type full", hint="merge the adapter first: lmforge export")
        model.requires_grad_(True)
    else:
        from peft import PeftModel, get_peft_model

        if gradient_checkpointing:
            model.enable_input_require_grads()
        try:
            if tuner.adapters:  # continue training an existing LoRA
                model = PeftModel.from_pretrained(model, tuner.adapters[0], is_trainable=True)
            else:
                model = get_peft_model(model, lora_config(tuner))
        except ValueError as e:
            raise UserError(
                f"LoRA setup failed: {str(e).splitlines()[0][:200]}",
                hint="check --target_modules / --target_regex against the model's module names",
            )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    print(f"[lmforge] trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.3f}%)")
    return model
