"""Every change lmforge makes to a third-party object, and every private third-party name it calls, in one place.

Each entry says why and the upstream version it was checked against (CHECKED); tests/test_thirdparty.py fails
when upstream changes what an entry relies on, so an upgrade shows here first instead of as a wrong result.
Nothing here patches a class: the changes are per instance (a layer's forward, a dropout entry, a loaded model's
quantizer marker) or an override in our own Trainer subclass (CheckpointHooks).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from types import MethodType
from typing import Any

from lmforge.errors import writing

CHECKED = {"torch": "2.13.0", "transformers": "5.24.0", "peft": "0.21.2", "trl": "1.16.0", "gradio": "6.31.0"}

# the private transformers.Trainer methods CheckpointHooks overrides, with the parameters it relies on
TRAINER_PRIVATE = {
    "_get_output_dir": ("self", "trial"),
    "_save_checkpoint": ("self", "model", "trial"),
    "_save": ("self", "output_dir", "state_dict"),
    "_load_from_checkpoint": ("self", "resume_from_checkpoint", "model"),
}
# the attributes of peft's lora.Linear that the fused CPU forward (tuners/fused_lora.py) reads
PEFT_LORA_LINEAR = ("base_layer", "lora_A", "lora_B", "lora_dropout", "scaling", "active_adapters", "merged")


def swap_lora_forward(layer: Any, forward: Any) -> None:
    """peft 0.21.2: give one lora.Linear *instance* another forward (tuners/fused_lora.py); the class is untouched."""
    layer.forward = MethodType(forward, layer)


def swap_lora_dropout(layer: Any, adapter: str, module: Any) -> None:
    """peft 0.21.2: `lora_dropout` is a ModuleDict of nn.Dropout/nn.Identity keyed by adapter name
    (tuners/dropout.py swaps in LaneDropout)."""
    layer.lora_dropout[adapter] = module


# gradio's private Blocks.launch keyword that turns off only its self-check (a HEAD of its own page, 3 s timeout)
GRADIO_NO_SELF_CHECK = {"_frontend": False}


def drop_gguf_quantizer(model: Any) -> None:
    """transformers 5.24: a GGUF load marks the (dequantized fp32) model as quantized, and save_pretrained then
    refuses; the weights are plain tensors, so the marker goes."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


# CPU inference linears (private torch ops) live in their own module of this package
from lmforge.thirdparty.cpu_linears import (  # noqa: E402
    CPU_LINEARS,
    INT4_GROUP,
    INT8_GEMV_ROWS,
    int4_cpu_linears,
    int8_cpu_linears,
    mkldnn_bf16_supported,
    packed_cpu_linears,
)

__all__ = [
    "CPU_LINEARS",
    "INT4_GROUP",
    "INT8_GEMV_ROWS",
    "int4_cpu_linears",
    "int8_cpu_linears",
    "mkldnn_bf16_supported",
    "packed_cpu_linears",
]


def run_exit_handlers() -> None:
    """CPython 3.10-3.13: run atexit handlers now (the CLI then leaves with os._exit, skipping a 1.5 s teardown)."""
    import atexit

    atexit._run_exitfuncs()


def register_attention(name: str, function: Any) -> str:
    """transformers 5.24: `function` as attention implementation `name`, with SDPA's mask for the calls that build
    one (`AttentionInterface` / `AttentionMaskInterface`, the public registries); returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(name, function)
    AttentionMaskInterface.register(name, sdpa_mask)
    return name


def daemon_cb_manager(
    model: Any, generation: Any, config: Any, deliver: Any, step_lock: Any, cpu_attention: str | None = None
) -> Any:
    """transformers 5.24: a `ContinuousBatchingManager` (generation/continuous_batching) whose loop thread is a
    daemon (upstream's is not, so a server would not exit while it idles) and whose outputs go straight to
    `deliver(output)` from the loop's thread (upstream queues them, or posts them to one asyncio loop). Our own
    subclass overrides `start` (it calls the private `_run_generation_loop`), `_generation_step` (one forward
    pass, run holding `step_lock`: the managers of one model share it, so their passes take turns) and, given
    `cpu_attention` (a registered name), runs a CPU sdpa model on it while the loop lives; the router is this
    instance's."""
    import threading

    import torch
    from transformers.generation.continuous_batching.continuous_api import ContinuousBatchingManager, OutputRouter

    class Router(OutputRouter):
        def deliver(self, output: Any) -> None:
            deliver(output)

        def deliver_batch(self, outputs: list) -> None:
            for output in outputs:
                deliver(output)

    class DaemonManager(ContinuousBatchingManager):
        def switch_to_cb_friendly_attn(self, model: Any, auto_switch_to_flash: bool = True) -> None:
            # upstream keeps an sdpa model on sdpa over the whole pack (block-diagonal mask): on CPU, where there
            # is no flash build, the loop runs lmforge's per-row split of the pack instead. It is not undone at
            # stop (no _original_attn_impl): outside a loop it is SDPA itself, and a model's other loop may still
            # run on it (an sdpa loop without the mask upstream builds for sdpa would mix the rows)
            if cpu_attention is not None and model.config._attn_implementation == cpu_attention:
                return  # switched by an earlier loop of this model
            cpu_sdpa = model.config._attn_implementation == "sdpa" and model.device.type == "cpu"
            if cpu_sdpa and cpu_attention is not None:
                model.set_attn_implementation(cpu_attention)
                return
            super().switch_to_cb_friendly_attn(model, auto_switch_to_flash)

        def start(self) -> None:
            self.background_thread_status.clear()
            self._generation_thread = threading.Thread(
                target=self._run_generation_loop,
                kwargs={"use_inference_mode": torch.is_inference_mode_enabled()},
                daemon=True,
                name="lmforge-continuous-batching",
            )
            self._generation_thread.start()

        def _generation_step(self) -> None:
            with step_lock:
                super()._generation_step()

    manager = DaemonManager(model, generation, config)
    manager.output_router = Router()
    return manager


def row_filtered_cb_warpers(manager: Any) -> int:
    """transformers 5.24: the per-request top-k / top-p warpers of a continuous-batching manager
    (cb_logits_processors.py) sort the whole vocabulary of every row at every step, rows that turned the filter
    off included (top_k >= vocabulary, top_p 1.0): 0.4 s a step for 64 rows of a 49k vocabulary on 2 cores.
    Swap them, in `manager.logit_processor` before the loop starts, for subclasses that run the upstream math on
    the rows that ask for it only (the others' scores pass unchanged, as upstream leaves them). Returns the count."""
    import torch
    from transformers.generation.continuous_batching import cb_logits_processors as cb

    def row_filtered(parent: type, off: Any) -> type:
        class RowFiltered(parent):  # type: ignore[misc, valid-type]
            def __call__(self, scores: Any, tensor_arg: Any) -> Any:
                arg = tensor_arg[: scores.size(0)]
                rows = torch.nonzero(~off(arg, scores.size(-1))).squeeze(-1)
                if rows.numel() == scores.size(0):
                    return super().__call__(scores, arg)
                if rows.numel() == 0:
                    return scores
                return scores.index_copy(0, rows, super().__call__(scores[rows], arg[rows]))

        return RowFiltered

    swaps = {
        cb.ContinuousBatchingTopKLogitsWarper: row_filtered(
            cb.ContinuousBatchingTopKLogitsWarper, lambda arg, vocab: arg >= vocab
        ),
        cb.ContinuousBatchingTopPLogitsWarper: row_filtered(
            cb.ContinuousBatchingTopPLogitsWarper, lambda arg, vocab: arg.view(torch.float32) >= 1.0
        ),
    }
    processors = manager.logit_processor.logits_processor
    done = 0
    for i, processor in enumerate(processors):
        cls = swaps.get(type(processor))
        if cls is not None:
            processors[i] = swapped = cls.__new__(cls)
            swapped.__dict__.update(vars(processor))
            done += 1
    return done


def llama_without_extra_buffers(**kwargs: Any) -> Any:
    """llama-cpp-python 0.3.36: a `Llama` whose weights stay in plain CPU buffers (`use_extra_bufts` false: no AMX /
    repacked weight buffers). A wheel built on a CPU that advertises AMX dies with SIGILL at the first decode in a
    container that does not grant AMX; `Llama()` has no argument for this model parameter, so the module function
    that makes the defaults is swapped for the duration of the call (the one place `Llama.__init__` reads it)."""
    import llama_cpp.llama as module
    from llama_cpp import Llama

    defaults = module.llama_cpp.llama_model_default_params

    def plain() -> Any:
        params = defaults()
        params.use_extra_bufts = False
        return params

    module.llama_cpp.llama_model_default_params = plain
    try:
        return Llama(**kwargs)
    finally:
        module.llama_cpp.llama_model_default_params = defaults


class CheckpointHooks:
    """Mixed into a Trainer (ours, or trl's through `with_checkpoint_hooks`), overriding the private methods in
    TRAINER_PRIVATE:

    - checkpoints are written to `<run>/.staging/checkpoint-N` and renamed into place when complete, with args.json
      inside, so a kill during a save never leaves a half checkpoint that resume would pick up;
    - a subclass may save and resume only its own weights (save_hooked_adapters / load_hooked_adapters: our
      Trainer does for the bottleneck/ReFT tuners).
    """

    def _get_output_dir(self, trial: Any) -> str:
        run_dir = super()._get_output_dir(trial)
        return os.path.join(run_dir, ".staging") if getattr(self, "_staging", False) else run_dir

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        from transformers.trainer_utils import rotate_checkpoints

        from lmforge.runargs import write_run_args

        name = f"checkpoint-{self.state.global_step}"
        if self.args.world_size > 1:
            # every rank writes its RNG state into the checkpoint: no single rename can cover that, so several
            # processes use the Trainer's own layout (rank 0 adds args.json)
            super()._save_checkpoint(model, trial)
            if self.args.should_save:
                write_run_args(Path(self._get_output_dir(trial)) / name / "args.json", getattr(self, "args_json", {}))
            return
        run_dir = Path(super()._get_output_dir(trial))
        staging = run_dir / ".staging"
        shutil.rmtree(staging, ignore_errors=True)
        t0 = time.perf_counter()
        done = sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        hint = "free space or pick another --output_dir" + (
            f"; {done[-1]} is complete: --resume_from_checkpoint {done[-1]}" if done else ""
        )
        try:
            with writing(name, run_dir, hint):
                self._staging = True
                try:
                    super()._save_checkpoint(model, trial)
                finally:
                    self._staging = False
                if self.args.should_save:
                    write_run_args(staging / name / "args.json", getattr(self, "args_json", {}))
                    final = run_dir / name
                    shutil.rmtree(final, ignore_errors=True)
                    os.replace(staging / name, final)  # the checkpoint appears whole or not at all
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # a failed save leaves nothing half-written behind
        if self.args.should_save:
            rotate_checkpoints(
                output_dir=str(run_dir),
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=False,
            )
        if hasattr(self, "_last_log_time"):  # tokens/s counts training time only
            self._last_log_time += time.perf_counter() - t0

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        if not self.save_hooked_adapters(output_dir or self.args.output_dir):
            super()._save(output_dir, state_dict)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        if not self.load_hooked_adapters(resume_from_checkpoint, model or self.model):
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def save_hooked_adapters(self, output_dir: str) -> bool:
        """Save only a hooked tuner's weights (our Trainer: tuners/adapter.py); False: the Trainer's own save."""
        return False

    def load_hooked_adapters(self, path: str, model: Any) -> bool:
        return False


def with_checkpoint_hooks(trainer_cls: type) -> type:
    """A trl trainer class with CheckpointHooks mixed in (its own __init__ runs unchanged)."""
    return type(f"Atomic{trainer_cls.__name__}", (CheckpointHooks, trainer_cls), {})


def vl_image_processor(family: Any, model_dir: Path, size: dict[str, int]) -> Any:
    """transformers 5.24 without torchvision: the stock Qwen2-VL/2.5-VL/3-VL processors cannot be built (their
    video processor imports torchvision; `AutoProcessor` silently returns a bare tokenizer), so the family's PIL
    image processor is loaded from the folder's preprocessor_config.json directly (a hub folder naming
    `Qwen2VLImageProcessor` loads as it is). `size` ({"shortest_edge", "longest_edge"} in pixels) overrides the
    folder's resize bounds, as --min_pixels/--max_pixels."""
    cls = family.image_processor_class()
    saved = (Path(model_dir) / "preprocessor_config.json").is_file()

    def build(**kwargs: Any) -> Any:
        return cls.from_pretrained(model_dir, **kwargs) if saved else cls(**dict(family.processor_defaults), **kwargs)

    proc = build()
    if not size:
        return proc
    # the processor needs both bounds: one flag given keeps the folder's other one (lowered to fit under a max)
    merged = {"shortest_edge": proc.size.shortest_edge, "longest_edge": proc.size.longest_edge, **size}
    merged["shortest_edge"] = min(merged["shortest_edge"], merged["longest_edge"])
    return build(size=merged)


def audio_feature_extractor(family: Any, model_dir: Path) -> Any:
    """An audio family's feature extractor (Qwen2-Audio: WhisperFeatureExtractor, 128 mel bins) from the folder's
    preprocessor_config.json, else the family's defaults. Audio decodes with soundfile + soxr (multimodal/audio.py),
    never torchaudio."""
    cls = family.feature_extractor_class()
    if (Path(model_dir) / "preprocessor_config.json").is_file():
        return cls.from_pretrained(model_dir)
    return cls(**dict(family.processor_defaults))


def save_vl_processor(family: Any, image_processor: Any, out: Path) -> None:
    """The image processor's (or an audio family's feature extractor's) preprocessor_config.json, and
    processor_config.json naming the *stock* processor class (transformers 5.24 would name our class, which a
    machine with torchvision cannot load)."""
    import json

    image_processor.save_pretrained(out)
    cfg = out / "preprocessor_config.json"
    data = json.loads(cfg.read_text(encoding="utf-8"))
    if family.image_processor:
        kind = data.get("image_processor_type", "").removesuffix("Pil") or "Qwen2VLImageProcessor"
        data["image_processor_type"] = kind
    data["processor_class"] = family.processor_class
    cfg.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (out / "processor_config.json").write_text(
        json.dumps({"processor_class": family.processor_class}, indent=2) + "\n", encoding="utf-8"
    )


def stock_vl_processor(
    family: Any,
    image_processor: Any,
    tokenizer: Any,
    chat_template: str | None,
    video_processor: Any = None,
    **kwargs: Any,
) -> Any:
    """transformers 5.24: the family's stock processor class without its video processor (whose constructor needs
    torchvision): a subclass whose `get_attributes` drops it; a stand-in video processor (multimodal/video.py) is
    attached afterwards. `image_processor`: an audio family's feature extractor in its place. `kwargs`: the
    folder's processor_config.json settings (LLaVA's patch_size ...). lmforge expands placeholders with this
    processor's own `replace_*_token` (`processor_media`), and the tests compare against its
    `apply_chat_template` and output, which lmforge must equal token for token."""
    import transformers

    stock = getattr(transformers, family.processor_class)

    class NoVideo(stock):  # type: ignore[misc, valid-type]
        @classmethod
        def get_attributes(cls) -> list[str]:
            return family.processor_attributes()

        def save_pretrained(self, save_directory: Any, **_: Any) -> None:
            """A trainer saving its processing class (trl's DPO): the tokenizer, and the processor files naming
            the stock classes (ours would not load where torchvision is, and the frame stand-in is no config)."""
            self.tokenizer.save_pretrained(save_directory)
            save_vl_processor(family, getattr(self, family.processor_attributes()[0]), Path(save_directory))

    first = family.processor_attributes()[0]
    proc = NoVideo(**{first: image_processor}, tokenizer=tokenizer, chat_template=chat_template, **kwargs)
    if video_processor is not None:
        proc.video_processor = video_processor
    return proc


def processor_media(processor: Any, kind: str, items: list, **kwargs: Any) -> tuple[dict, list[str]]:
    """The processor's own media step (transformers 5.24 `ProcessorMixin._process_images/_process_videos`,
    Qwen2AudioProcessor._process_audio: the private halves of `__call__`): the model inputs of `items` and the
    text each placeholder expands to."""
    step = {"image": "_process_images", "video": "_process_videos", "audio": "_process_audio"}[kind]
    processed, replacements = getattr(processor, step)(items, return_tensors="pt", **kwargs)
    if kind == "audio":
        processed = {k: v for k, v in dict(processed).items() if k not in processor.unused_input_names}
    return dict(processed), list(replacements)


def grpo_vl_processor(processor: Any) -> Any:
    """trl 1.16's GRPO on a vision-language model: the training forward re-renders each prompt, runs
    `processing_class(images=..., text=..., padding=True)` for pixel_values, image_grid_thw and (Qwen)
    mm_token_type_ids, and pairs those with the rollout's prompt ids, which it pads on the left. trl loads its own
    processor with padding_side="left"; ours pads on the tokenizer's side (right for Qwen), which put
    mm_token_type_ids out of step with the ids in a batch of unequal prompts (wrong mrope positions, no error).
    So the processor given to GRPO pads on the left."""
    processor.tokenizer.padding_side = "left"
    return processor


def nltk_without_punkt() -> bool:
    """nltk 3.9 (EvalScope 1.14.1's BLEU): `word_tokenize` first splits sentences with the `punkt_tab` model, a
    separate download that no package carries; offline, EvalScope logs an error per row and reports BLEU as 0.
    Without that data, `nltk.word_tokenize` is replaced by itself with `preserve_line=True` (the same Treebank
    word split, the text taken as one sentence), so BLEU is computed. True when the replacement was made."""
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return False
    except LookupError:
        pass
    original = getattr(nltk.word_tokenize, "lmforge_original", nltk.word_tokenize)

    def word_tokenize(text: str, language: str = "english", preserve_line: bool = True) -> list[str]:
        return original(text, language=language, preserve_line=True)

    word_tokenize.lmforge_original = original  # type: ignore[attr-defined]
    nltk.word_tokenize = word_tokenize
    return True
