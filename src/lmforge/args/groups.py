"""Flag groups: small dataclasses composed side by side by each command (no inheritance).

Field names are ms-swift's flag names. `metadata["help"]` is the `--help` text; `metadata["aliases"]` lists old or
foreign spellings that map to the field. This module must stay import-light: `lmforge --help` reads it without torch.

What a value may be is declared here too, on `flag(...)`, and checked by `args/validate.py` right after parsing:
`choices`; bounds `ge`/`gt`/`le`/`lt` (each list item), with `off`, a sentinel exempt from them (-1: off/all);
`kind` ("json", "regex", "file", "path", "adapter", "dir_out", "file_out", "json_file", "dataset"; see validate.py);
`json_type` (the JSON value's type); `pattern` (regex, what it means); `presets` (names a "json_file" flag also takes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def flag(
    default: Any = None,
    help: str = "",
    aliases: tuple[str, ...] = (),
    choices: tuple | None = None,
    **checks: Any,
) -> Any:
    """A dataclass field carrying its CLI help, aliases, allowed values and checks (see the module docstring)."""
    unknown = set(checks) - CHECK_KEYS
    if unknown:  # a typo here would silently drop a check
        raise TypeError(f"flag(): unknown check {sorted(unknown)}")
    meta = {"help": help, "aliases": aliases, "choices": choices, **checks}
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata=meta)
    return field(default=default, metadata=meta)


CHECK_KEYS = frozenset({"ge", "gt", "le", "lt", "off", "kind", "json_type", "pattern", "presets"})
POSITIVE = {"ge": 1}  # sizes and counts where 0 makes no sense
RATIO = {"ge": 0, "lt": 1}
PROB = {"ge": 0, "le": 1}
SEED = {"ge": 0, "lt": 2**32}  # numpy's and datasets' seed range
PORT = {"ge": 1, "le": 65535}
# names transformers accepts (transformers.SchedulerType, INTEGRATION_TO_CALLBACK; tests/args checks they match)
LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
    "greedy",
)
REPORTERS = (
    "tensorboard",
    "wandb",
    "swanlab",
    "mlflow",
    "trackio",
    "azure_ml",
    "comet_ml",
    "neptune",
    "codecarbon",
    "clearml",
    "dagshub",
    "flyte",
    "dvclive",
    "kubeflow",
    "none",
)
ZERO_PRESETS = ("zero0", "zero1", "zero2", "zero3", "zero2_offload", "zero3_offload")  # train/distributed.ZERO_NAMES
LORA_INITS = (r"(?i)true|false|gaussian|eva|olora|pissa|pissa_niter_\d+|corda|loftq|orthogonal", "a LoRA init")
DTYPES = ("bfloat16", "float16", "float32")


@dataclass
class PluginArgs:
    external_plugins: list[str] = flag(
        [], "Python files that register datasets, templates or models", aliases=("custom_register_path",), kind="file"
    )


@dataclass
class ModelArgs:
    model: str | None = flag(
        None, "hub id, local HF directory or .gguf file (default: the embedded SmolLM2-135M-Instruct)"
    )
    model_type: str | None = flag(
        None, "model family (qwen3, qwen2, llama, ...); detected from config.json when omitted", kind="model_type"
    )
    model_revision: str | None = flag(None, "hub revision (branch, tag or commit)")
    gguf_file: str | None = flag(None, "GGUF file name inside the --model directory")
    torch_dtype: str | None = flag(
        None,
        "weights dtype; default: bfloat16 where the CPU/GPU has bf16 units, else float32",
        choices=("bfloat16", "float16", "float32", "auto"),
    )
    use_hf: bool = flag(False, "download from Hugging Face instead of ModelScope")
    hub_token: str | None = flag(None, "token for private hub repositories")
    trust_remote_code: bool = flag(False, "allow the model's own Python code to run (off unless you say so)")
    attn_impl: str | None = flag(None, "attention implementation: sdpa, eager, flash_attention_2 (GPU)")
    device_map: str | None = flag(None, "transformers device_map (auto, cpu, cuda:0, ...)")


@dataclass
class TemplateArgs:
    template: str | None = flag(
        None, "chat template name (qwen3, qwen2_5, chatml, llama3, smollm2, ...); default per model", kind="template"
    )
    system: str | None = flag(None, "system prompt (a string or a .txt file); '' removes the default one")
    max_length: int | None = flag(None, "maximum tokens per encoded row", **POSITIVE)
    truncation_strategy: str = flag(
        "delete",
        "rows longer than --max_length: delete, or keep the left/right part",
        choices=("delete", "left", "right"),
    )
    enable_thinking: bool | None = flag(None, "Qwen3 hybrid thinking at inference (default: the template's own)")
    agent_template: str | None = flag(
        None,
        "tool-call markup: hermes (Qwen), llama3, or a plug-in's; default: the chat template's own (else hermes)",
        kind="agent_template",
    )
    loss_scale: str = flag(
        "default",
        "which tokens carry loss: default (all assistant turns), last_round, ignore_empty_think, all, or a plug-in's",
        kind="loss_scale",
    )
    max_pixels: int | None = flag(
        None,
        "vision-language models: resize images to at most this many pixels (env MAX_PIXELS; saved in args.json)",
        **POSITIVE,
    )
    min_pixels: int | None = flag(
        None, "vision-language models: resize images to at least this many pixels (env MIN_PIXELS)", **POSITIVE
    )
    fps: float | None = flag(None, "video: frames sampled per second (env FPS; default 2; saved in args.json)", gt=0)
    max_frames: int | None = flag(
        None, "video: at most this many frames per video (env FPS_MAX_FRAMES; default 768)", **POSITIVE
    )


@dataclass
class DataArgs:
    dataset: list[str] = flag([], "datasets: [hf::|ms::]<id|dir|file>[:subset1/subset2|:all][#N] ...", kind="dataset")
    val_dataset: list[str] = flag([], "validation datasets, same syntax as --dataset", kind="dataset")
    split_dataset_ratio: float = flag(0.0, "fraction of --dataset held out for validation", **RATIO)
    data_seed: int = flag(42, "seed for #N sampling, shuffling and the validation split", **SEED)
    dataset_num_proc: int = flag(1, "processes for dataset conversion and encoding", **POSITIVE)
    dataset_shuffle: bool = flag(True, "shuffle the training set")
    streaming: bool = flag(False, "read datasets lazily (for files larger than memory; needs --max_steps)")
    columns: str | None = flag(
        None, 'JSON map renaming columns before format detection, e.g. \'{"src": "dst"}\'', kind="json", json_type=dict
    )
    custom_dataset_info: list[str] = flag([], "dataset_info.json files (ms-swift or LLaMA-Factory schema)", kind="file")
    strict: bool = flag(False, "stop at the first bad row instead of dropping it")
    model_name: list[str] = flag([], "self-cognition name: <zh> <en> (one value serves both)")
    model_author: list[str] = flag([], "self-cognition author: <zh> <en> (one value serves both)")
    load_from_cache_file: bool = flag(True, "reuse the datasets cache for converted and encoded rows")


@dataclass
class CheckArgs:
    dump_encoded: str | None = flag(
        None, "write one JSON line per encoded row, in the data's order: {source, input_ids, labels}", kind="file_out"
    )
    show_samples: int = flag(1, "how many encoded rows to print with their trained spans marked", ge=0)
    estimate: bool = flag(False, "also estimate parameters and per-rank memory for the training flags given")


@dataclass
class TunerArgs:
    tuner_type: str = flag(
        "lora",
        "lora, full, adalora, vera, boft, fourierft, bone, llamapro, adapter, reft, or a plug-in's",
        aliases=("train_type",),
        kind="tuner",
    )
    lora_rank: int = flag(8, "LoRA rank r", **POSITIVE)
    adapter_length: int = flag(128, "--tuner_type adapter: bottleneck width", **POSITIVE)
    adapter_act: str = flag(
        "gelu", "--tuner_type adapter: activation (gelu, relu, silu, tanh)", choices=("gelu", "relu", "silu", "tanh")
    )
    reft_layers: list[int] = flag([], "--tuner_type reft: decoder layers to edit (default: all)", ge=0)
    reft_rank: int = flag(4, "--tuner_type reft: rank of the edited subspace", **POSITIVE)
    reft_intervention_type: str = flag(
        "LoreftIntervention",
        "--tuner_type reft: LoreftIntervention or NoreftIntervention",
        choices=("LoreftIntervention", "NoreftIntervention"),
    )
    lora_alpha: int = flag(32, "LoRA alpha", **POSITIVE)
    lora_dropout: float = flag(0.05, "LoRA dropout", **RATIO)
    lora_bias: str = flag("none", "LoRA bias: none, all, lora_only", choices=("none", "all", "lora_only"))
    target_modules: list[str] = flag(["all-linear"], "modules to adapt: all-linear, or names such as q_proj v_proj")
    target_regex: str | None = flag(None, "regex over module names (overrides --target_modules)", kind="regex")
    modules_to_save: list[str] = flag([], "modules trained in full next to the adapter (e.g. embed_tokens lm_head)")
    adapters: list[str] = flag(
        [], "LoRA checkpoints to load (infer/export/deploy) or to continue from (training)", kind="adapter"
    )
    use_dora: bool = flag(False, "DoRA: weight-decomposed LoRA")
    use_rslora: bool = flag(False, "rank-stabilised LoRA scaling (alpha / sqrt(r))")
    init_weights: str = flag(
        "true", "LoRA init: true, false, gaussian, pissa, pissa_niter_N, olora", pattern=LORA_INITS
    )
    lorap_lr_ratio: float | None = flag(None, "LoRA+: learning-rate ratio of B over A matrices (e.g. 16)", gt=0)
    adalora_target_r: int = flag(8, "AdaLoRA: average target rank", **POSITIVE)
    adalora_init_r: int = flag(12, "AdaLoRA: initial rank", **POSITIVE)
    vera_rank: int = flag(256, "VeRA rank", **POSITIVE)
    boft_block_size: int = flag(4, "BOFT block size", **POSITIVE)
    fourier_n_frequency: int = flag(2000, "FourierFT: learnable frequencies per layer", **POSITIVE)
    fourier_scaling: float = flag(300.0, "FourierFT scaling", gt=0)
    llamapro_num_new_blocks: int = flag(4, "LLaMA-Pro: decoder blocks added (and trained)", **POSITIVE)
    use_galore: bool = flag(False, "GaLore: low-rank gradient projection (full training)")
    galore_rank: int = flag(128, "GaLore rank", **POSITIVE)
    galore_update_proj_gap: int = flag(50, "GaLore: steps between projection updates", **POSITIVE)
    galore_scale: float = flag(1.0, "GaLore scale", gt=0)
    lisa_activated_layers: int = flag(0, "LISA: decoder layers trained at a time (0: off; full training)", ge=0)
    lisa_step_interval: int = flag(20, "LISA: steps between re-sampling the active layers", **POSITIVE)
    freeze_parameters_ratio: float = flag(
        0.0, "full training: freeze this fraction of parameters, from the bottom", **PROB
    )
    trainable_parameters: list[str] = flag([], "full training: name prefixes kept trainable despite freezing")
    freeze_vit: bool = flag(True, "vision-language models: keep the vision tower frozen (no LoRA on it)")
    freeze_aligner: bool = flag(True, "vision-language models: keep the aligner (vision-to-text projector) frozen")
    freeze_llm: bool = flag(False, "vision-language models: keep the language model frozen")
    vit_lr: float | None = flag(None, "vision-language models: learning rate of the vision tower", gt=0)
    aligner_lr: float | None = flag(None, "vision-language models: learning rate of the aligner", gt=0)
    quant_method: str | None = flag(
        None, "load quantised for QLoRA: bnb, quanto (CPU too) or eetq (CUDA)", choices=("bnb", "hqq", "quanto", "eetq")
    )
    quant_bits: int | None = flag(None, "4 or 8", choices=(2, 4, 8))
    bnb_4bit_quant_type: str = flag("nf4", "nf4 or fp4", choices=("nf4", "fp4"))
    bnb_4bit_use_double_quant: bool = flag(True, "quantise the quantisation constants too")
    bnb_4bit_compute_dtype: str | None = flag(None, "compute dtype (default: --torch_dtype)", choices=DTYPES)
    use_liger_kernel: bool = flag(False, "Liger fused kernels (GPU only)")
    tuner_backend: str = flag("peft", "peft or unsloth (GPU only)", choices=("peft", "unsloth"))


@dataclass
class AdapterArgs:
    """The one tuner flag of infer, export, deploy and app (the training tuner flags would mean nothing there)."""

    adapters: list[str] = flag(
        [], "LoRA checkpoints to load; deploy also takes name=PATH pairs (served by name)", kind="adapter"
    )


@dataclass
class TrainArgs:
    output_dir: str = flag("output", "where runs go; a vN-YYYYmmdd-HHMMSS folder is made inside", kind="dir_out")
    add_version: bool = flag(True, "write into a new vN-YYYYmmdd-HHMMSS sub-folder of --output_dir")
    num_train_epochs: float = flag(3.0, "epochs", gt=0)
    max_steps: int = flag(-1, "stop after this many optimizer steps (overrides epochs)", ge=1, off=-1)
    per_device_train_batch_size: int = flag(1, "rows per training step on each device", **POSITIVE)
    per_device_eval_batch_size: int = flag(1, "rows per evaluation step on each device", **POSITIVE)
    learning_rate: float | None = flag(None, "peak learning rate (default: 1e-4 for LoRA, 1e-5 for full)", gt=0)
    gradient_accumulation_steps: int | None = flag(
        None, "micro-batches per optimizer step (default: total batch >= 16)", **POSITIVE
    )
    lr_scheduler_type: str = flag("cosine", "transformers scheduler name", choices=LR_SCHEDULERS)
    warmup_ratio: float = flag(
        0.0, "fraction of steps spent warming up (transformers: a float warmup_steps < 1)", **RATIO
    )
    weight_decay: float = flag(0.1, "AdamW weight decay", ge=0)
    adam_beta2: float = flag(0.95, "AdamW beta2", **RATIO)
    max_grad_norm: float = flag(1.0, "gradient clipping", ge=0)
    eval_steps: int | None = flag(None, "evaluate every N steps (default: --save_steps)", **POSITIVE)
    save_steps: int = flag(500, "save a checkpoint every N steps", **POSITIVE)
    save_total_limit: int | None = flag(None, "keep at most N checkpoints (oldest deleted)", **POSITIVE)
    logging_steps: int = flag(5, "log every N steps", **POSITIVE)
    seed: int = flag(42, "random seed", **SEED)
    gradient_checkpointing: bool | None = flag(None, "recompute activations (default: on for GPU, off on CPU)")
    dataloader_num_workers: int = flag(0, "data loader worker processes", ge=0)
    report_to: list[str] = flag(
        ["tensorboard"], "tensorboard, wandb, none (missing integrations are skipped)", choices=REPORTERS
    )
    resume_from_checkpoint: str | None = flag(None, "checkpoint folder to resume from exactly", kind="path")
    loss_type: str | None = flag(
        None, "sft/pt: a loss registered by a plug-in; rlhf: the trainer's loss variant (trl names: sigmoid, ipo, ...)"
    )
    callbacks: list[str] = flag([], "TrainerCallbacks registered by plug-ins (register_callback)", kind="callback")
    optimizer: str | None = flag(None, "an optimizer registered by a plug-in (register_optimizer)", kind="optimizer")
    trainer: str | None = flag(None, "sft/pt: a Trainer subclass registered by a plug-in", kind="trainer")
    packing: bool = flag(False, "pack rows into --max_length sequences (attention stays per row)")
    padding_free: bool | None = flag(
        None,
        "flatten each batch into one row with position ids, no padding (default: on for llama/qwen families, "
        "measured 1.15-1.19x faster on CPU)",
    )
    deepspeed: str | None = flag(
        None,
        "ZeRO: zero0, zero1, zero2, zero3, zero2_offload, zero3_offload or a DeepSpeed config .json",
        kind="json_file",
        presets=ZERO_PRESETS,
    )
    fsdp: str | None = flag(
        None,
        "FSDP on GPUs: fsdp2 (full shard, one unit per decoder layer) or a config .json",
        kind="json_file",
        presets=("fsdp2",),
    )


@dataclass
class GenerationArgs:
    max_new_tokens: int | None = flag(
        None, "tokens to generate per answer (default 512 interactive, 2048 batch)", **POSITIVE
    )
    temperature: float | None = flag(None, "sampling temperature; 0 is greedy (default: generation_config.json)", ge=0)
    top_p: float | None = flag(None, "nucleus sampling", gt=0, le=1)
    top_k: int | None = flag(None, "top-k sampling", ge=0)
    repetition_penalty: float | None = flag(None, "penalty for repeated tokens", gt=0)
    stop_words: list[str] = flag([], "extra strings that end an answer")
    stream: bool | None = flag(None, "print tokens as they come (default: true interactive, false batch)")


@dataclass
class InferArgs:
    infer_backend: str = flag(
        "pt",
        "pt/transformers (PyTorch), llamacpp (a GGUF via llama-cpp-python), vllm, sglang, lmdeploy",
        choices=("pt", "transformers", "llamacpp", "vllm", "sglang", "lmdeploy"),
    )
    max_batch_size: int = flag(1, "rows per forward pass in batch mode (-1: all at once)", ge=1, off=-1)
    result_path: str | None = flag(
        None, "batch output .jsonl (default: <ckpt>/infer_result/<time>.jsonl)", kind="file_out"
    )
    metric: str | None = flag(
        None, "score batch answers against the labels: acc, rouge, toolcall or a plug-in's", kind="metric"
    )
    load_args: bool = flag(True, "restore model, template and system prompt from the checkpoint's args.json")
    load_data_args: bool = flag(False, "run on the training run's validation data (from args.json)")
    merge_lora: bool = flag(False, "merge the adapters into <ckpt>-merged first, then generate from it")


@dataclass
class ExportArgs:
    merge_lora: bool = flag(False, "merge --adapters into the base model")
    output_dir: str | None = flag(None, "where to write (default: <ckpt>-merged)", kind="dir_out")
    max_shard_size: str = flag(
        "5GB", "largest safetensors shard", pattern=(r"(?i)\d+[kmg]i?b", "a size such as 5GB or 500MiB")
    )
    exist_ok: bool = flag(False, "write into an existing --output_dir")
    load_args: bool = flag(True, "restore model, template and system prompt from the checkpoint's args.json")
    push_to_hub: bool = flag(False, "upload the result to the hub")
    hub_model_id: str | None = flag(None, "hub repository for --push_to_hub")
    hub_private_repo: bool = flag(False, "create the hub repository as private")
    commit_message: str = flag("update files", "hub commit message")
    quant_method: str | None = flag(None, "quantized export: bnb, gptq, awq, fp8 (or a plug-in's)", kind="exporter")
    quant_bits: int | None = flag(None, "quantized export: bits per weight (4 or 8; the method says which)")
    quant_n_samples: int = flag(256, "quantized export: calibration rows taken from --dataset", **POSITIVE)
    group_size: int = flag(128, "gptq/awq: weights sharing one scale; must divide every layer's input width", ge=1)
    quant_check: bool = flag(True, "after a quantized or GGUF export, measure and save the quality report")
    to_gguf: bool = flag(False, "write one .gguf file (llama.cpp / Ollama) with llama.cpp's own converter")
    gguf_type: str = flag("f16", "--to_gguf: f16, bf16, q8_0 or q4_k_m", choices=("f16", "bf16", "q8_0", "q4_k_m"))


@dataclass
class DeployArgs:
    host: str = flag("127.0.0.1", "address to listen on (0.0.0.0 for every interface)")
    port: int = flag(8000, "port; a busy port is an error", **PORT)
    api_key: str | None = flag(None, "require 'Authorization: Bearer KEY' on every route but /health")
    served_model_name: str | None = flag(None, "name of the base model in /v1/models (default: its folder name)")
    max_batch_size: int = flag(16, "requests batched into one forward pass", **POSITIVE)
    load_args: bool = flag(True, "restore model, template and system prompt from the checkpoint's args.json")
    log_level: str = flag("info", "uvicorn log level", choices=("critical", "error", "warning", "info", "debug"))
    allowed_local_media_path: str | None = flag(
        None,
        "vision-language models: image_url file:// paths and local paths are read only under this folder",
        kind="path",
    )
    infer_backend: str = flag(
        "pt",
        "pt/transformers (PyTorch), llamacpp (a GGUF via llama-cpp-python), vllm, sglang, lmdeploy",
        choices=("pt", "transformers", "llamacpp", "vllm", "sglang", "lmdeploy"),
    )


@dataclass
class AppArgs:
    server_name: str = flag("127.0.0.1", "address of the chat page (0.0.0.0 for every interface)")
    server_port: int = flag(7860, "port of the chat page", **PORT)
    share: bool = flag(False, "ask Gradio for a public share link (needs internet)")
    studio_title: str | None = flag(None, "page title")
    load_args: bool = flag(True, "restore model, template and system prompt from the checkpoint's args.json")
    infer_backend: str = flag(
        "pt",
        "pt/transformers (PyTorch), llamacpp (a GGUF via llama-cpp-python), vllm, sglang, lmdeploy",
        choices=("pt", "transformers", "llamacpp", "vllm", "sglang", "lmdeploy"),
    )


@dataclass
class RLHFArgs:
    rlhf_type: str = flag(
        "dpo", "alignment method", choices=("dpo", "kto", "cpo", "simpo", "orpo", "rm", "ppo", "grpo", "gkd")
    )
    beta: float | None = flag(
        None, "KL/temperature strength (default: simpo 2.0, grpo 0.04, gkd 0.5, others 0.1)", ge=0
    )
    ref_model: str | None = flag(None, "reference model (default: the policy's own base weights)")
    ref_adapters: list[str] = flag(
        [], "LoRA applied to the reference model (e.g. the SFT adapter you start from)", kind="adapter"
    )
    label_smoothing: float = flag(0.0, "DPO/CPO label smoothing", ge=0, le=0.5)
    rpo_alpha: float | None = flag(None, "DPO: weight of an added NLL term on the chosen answer", ge=0)
    cpo_alpha: float = flag(1.0, "CPO: weight of the NLL term (SimPO uses 0)", ge=0)
    simpo_gamma: float = flag(1.0, "SimPO target reward margin", ge=0)
    desirable_weight: float = flag(1.0, "KTO weight of desirable rows", gt=0)
    undesirable_weight: float = flag(1.0, "KTO weight of undesirable rows", gt=0)
    center_rewards_coefficient: float | None = flag(None, "RM: push rewards towards zero mean", ge=0)
    max_completion_length: int = flag(512, "tokens sampled per completion (GRPO/PPO/GKD)", **POSITIVE)
    temperature: float = flag(0.9, "sampling temperature for GRPO/PPO/GKD rollouts", gt=0)
    top_p: float = flag(1.0, "GRPO/PPO rollouts: nucleus sampling (1.0 is off)", gt=0, le=1)
    top_k: int = flag(0, "GRPO/PPO rollouts: top-k sampling (0 is off)", ge=0)
    num_generations: int = flag(8, "GRPO completions per prompt", ge=2)
    reward_funcs: list[str] = flag(
        [], "GRPO rewards: accuracy, format, cosine, repetition, soft_overlong, or plug-ins", kind="reward"
    )
    reward_weights: list[float] = flag([], "weights of --reward_funcs (default: all 1)")
    reward_model: str | None = flag(None, "PPO: a sequence-classification reward model (e.g. an rm checkpoint)")
    teacher_model: str | None = flag(None, "GKD: the teacher model")
    lmbda: float = flag(0.5, "GKD: fraction of on-policy (student-generated) batches", **PROB)
    use_vllm: bool = flag(False, "GRPO rollouts with vLLM (GPU only)")
    vllm_mode: str = flag(
        "colocate", "--use_vllm: vLLM inside the trainer, or a trl vllm-serve server", choices=("colocate", "server")
    )
    vllm_server_host: str | None = flag(None, "--vllm_mode server: its host (none: lmforge starts one itself)")
    vllm_server_port: int = flag(8000, "--vllm_mode server: its port", **PORT)
    vllm_server_timeout: float = flag(240.0, "--vllm_mode server: seconds to wait for it", gt=0)
    log_completions: bool = flag(False, "GRPO/PPO: write sampled completions and rewards to completions.jsonl")
    num_ppo_epochs: int = flag(4, "PPO: optimisation epochs per rollout batch", **POSITIVE)
    kl_coef: float = flag(0.05, "PPO: KL penalty to the reference in the reward", ge=0)
    cliprange: float = flag(0.2, "PPO: policy ratio clip", gt=0)
    cliprange_value: float = flag(0.2, "PPO: value clip", gt=0)
    vf_coef: float = flag(0.1, "PPO: value loss weight", ge=0)
    gamma: float = flag(1.0, "PPO: discount", **PROB)
    lam: float = flag(0.95, "PPO: GAE lambda", **PROB)
    soft_max_length: int | None = flag(
        None, "soft_overlong reward: length where the penalty reaches its maximum", **POSITIVE
    )
    soft_cache_length: int | None = flag(
        None, "soft_overlong reward: tokens before soft_max_length where it starts", **POSITIVE
    )


TASK_TYPES = (
    "causal_lm",
    "seq_cls",
    "embedding",
    "reranker",
    "generative_reranker",
)  # entries of the task table (tasks.py)


@dataclass
class TaskArgs:
    """What the model is trained to do (ms-swift's --task_type and its companions); sft only."""

    task_type: str = flag(
        "causal_lm",
        "causal_lm (chat), seq_cls (a classifier head), embedding, reranker or generative_reranker",
        choices=TASK_TYPES,
    )
    num_labels: int | None = flag(None, "seq_cls: number of classes (1 with regression)", **POSITIVE)
    problem_type: str | None = flag(
        None,
        "seq_cls: default regression for num_labels 1, else single_label_classification",
        choices=("regression", "single_label_classification", "multi_label_classification"),
    )
    labels: list[str] = flag([], "seq_cls: class names in id order (string labels in the data map onto them)")
    use_chat_template: bool = flag(
        True, "seq_cls/embedding: render rows with the chat template (false: the turns' plain text)"
    )
    pooling: str | None = flag(
        None,
        "embedding: last (last token), mean (over tokens) or cls (first token); default: the model family's "
        "(last for causal LMs, cls for BERT-style encoders)",
        choices=("last", "mean", "cls"),
    )
    infonce_temperature: float | None = flag(
        None,
        "embedding --loss_type infonce (in-batch negatives + hard negatives): softmax temperature (default "
        "$INFONCE_TEMPERATURE or 0.1)",
        gt=0,
    )
    generative_reranker_positive_token: str | None = flag(
        None,
        "generative_reranker: the relevant answer token (default $GENERATIVE_RERANKER_POSITIVE_TOKEN or yes)",
    )
    generative_reranker_negative_token: str | None = flag(
        None,
        "generative_reranker: the irrelevant answer token (default $GENERATIVE_RERANKER_NEGATIVE_TOKEN or no)",
    )


@dataclass
class WebUIArgs:
    server_name: str = flag("127.0.0.1", "address of the web UI (0.0.0.0 for every interface)")
    server_port: int = flag(7860, "port of the web UI; a busy port is an error", **PORT)
    api_key: str | None = flag(None, "require a login: any user name, this key as the password")
    output_dir: str = flag(
        "output", "where the UI's jobs write their runs, and where finished runs are listed from", kind="dir_out"
    )
