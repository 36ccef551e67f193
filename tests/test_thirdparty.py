"""What lmforge relies on in third-party code (lmforge/thirdparty.py): each test fails when upstream changes it."""

from __future__ import annotations

import atexit
import inspect
from importlib.metadata import version
from types import SimpleNamespace

import pytest
import torch

from lmforge import thirdparty


def test_versions_are_the_checked_ones_or_the_check_is_updated():
    """An upgrade must come with a re-check of this module: bump CHECKED once the tests below pass again."""
    for pkg, checked in thirdparty.CHECKED.items():
        assert version(pkg).split("+")[0] == checked, f"{pkg} {version(pkg)}: re-check lmforge/thirdparty.py"


def test_trainer_private_methods_keep_their_parameters():
    from transformers import Trainer

    for name, params in thirdparty.TRAINER_PRIVATE.items():
        assert hasattr(Trainer, name), name
        assert tuple(inspect.signature(getattr(Trainer, name)).parameters)[: len(params)] == params, name


def test_peft_lora_linear_keeps_what_the_fused_forward_reads(tiny_llama):
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora.layer import Linear
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_llama), LoraConfig(r=2, target_modules=["q_proj"], lora_dropout=0.1)
    )
    layer = next(m for m in model.modules() if type(m) is Linear)
    for attr in thirdparty.PEFT_LORA_LINEAR:
        assert hasattr(layer, attr), attr
    assert isinstance(layer.lora_dropout, torch.nn.ModuleDict) and isinstance(
        layer.lora_dropout["default"], torch.nn.Dropout
    )
    swapped = torch.nn.Identity()
    thirdparty.swap_lora_dropout(layer, "default", swapped)
    assert layer.lora_dropout["default"] is swapped
    thirdparty.swap_lora_forward(layer, lambda self, x, *a, **k: x * 0)
    assert float(layer(torch.ones(1, 64)).abs().sum()) == 0  # the instance's forward is the one called
    assert type(layer).forward is Linear.forward  # the class is untouched


def test_private_torch_and_stdlib_calls_exist():
    assert callable(torch.ops.mkldnn._is_mkldnn_bf16_supported)
    assert isinstance(thirdparty.mkldnn_bf16_supported(), bool)
    assert callable(atexit._run_exitfuncs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_int8_weight_only_kernel_keeps_its_contract(dtype):
    """thirdparty.int8_cpu_linears relies on aten._weight_int8pack_mm(x [M, K], int8 w [N, K], scales [N]) = x @
    (w * scales).T: checked against the dequantised matmul, and the swapped layer against the float one."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48).to(dtype)
    x = torch.randn(2, 3, 64, dtype=dtype)
    wide = torch.randn(thirdparty.INT8_GEMV_ROWS, 64, dtype=dtype)  # the cast-and-gemm branch
    q = torch.randint(-127, 128, (48, 64), dtype=torch.int8)
    scales = torch.rand(48, dtype=dtype) / 50
    got = torch.ops.aten._weight_int8pack_mm(x.reshape(6, 64), q, scales)
    dequantised = x.reshape(6, 64).float() @ (q.float() * scales.float()[:, None]).T
    assert torch.allclose(got.float(), dequantised, rtol=0.02, atol=0.1)
    want, want_wide = lin(x), lin(wide)
    box = torch.nn.Sequential(lin)
    assert thirdparty.int8_cpu_linears(box) == 1 and type(box[0]) is not torch.nn.Linear
    assert torch.allclose(box(x).float(), want.float(), rtol=0.05, atol=0.05)
    assert torch.allclose(box(wide).float(), want_wide.float(), rtol=0.05, atol=0.05)


def test_int4_weight_only_kernel_keeps_its_contract():
    """thirdparty.int4_cpu_linears relies on aten._convert_weight_to_int4pack_for_cpu(codes [N, K] in 0..15) and
    _weight_int4pack_mm_for_cpu(x, packed, 32, [K/32, N, (scale, min + 8 * scale)]) = x @ (codes * scale + min).T.
    Weights already on a 4-bit grid per 32-block (a Q4_1 model's) come back to it: the swapped layer equals the
    bf16 one up to bf16 rounding; the output head and sizes the packing cannot tile (in % 32, out % 16) go to int8."""

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Linear(64, 96, bias=True)
            self.odd = torch.nn.Linear(96, 40, bias=False)  # 40 out: not 16-tiles, int8
            self.narrow = torch.nn.Linear(40, 64, bias=False)  # 40 in: not 32-blocks, int8
            self.head = torch.nn.Linear(64, 80, bias=False)

        def get_output_embeddings(self) -> torch.nn.Module:
            return self.head

    torch.manual_seed(0)
    model = Tiny()
    with torch.no_grad():  # put the body on a Q4_1 grid: 16 levels between each block's min and max
        w = model.body.weight.view(96, 2, 32)
        low, step = w.amin(-1, keepdim=True), (w.amax(-1, keepdim=True) - w.amin(-1, keepdim=True)) / 15
        w.copy_(torch.round((w - low) / step) * step + low)
    model = model.to(torch.bfloat16)
    x = torch.randn(5, 64, dtype=torch.bfloat16)
    want = model.body(x)
    assert thirdparty.int4_cpu_linears(model) == 4
    kinds = {name: type(m).__name__ for name, m in model.named_children()}
    assert kinds == {"body": "Int4Linear", "odd": "Int8Linear", "narrow": "Int8Linear", "head": "Int8Linear"}
    assert torch.allclose(model.body(x).float(), want.float(), rtol=0.02, atol=0.05)


def test_a_gguf_load_still_needs_the_quantizer_reset_to_save(tmp_path):
    """The embedded GGUF, loaded as the converter does: marked quantized, and saveable once the marker is gone."""
    from transformers import AutoModelForCausalLM

    from lmforge.models.loader import embedded_gguf

    gguf = embedded_gguf()
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    assert model.hf_quantizer is not None  # gone upstream: drop_gguf_quantizer is no longer needed
    thirdparty.drop_gguf_quantizer(model)
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()


@pytest.mark.parametrize("method", ["dpo", "kto", "cpo", "orpo", "rm", "grpo", "gkd"])
def test_trl_trainers_take_what_the_driver_passes(method):
    from lmforge.train.trl_api import trainer_classes

    config_cls, trainer_cls = trainer_classes(method)
    params = inspect.signature(trainer_cls.__init__).parameters
    for name in ("model", "args", "train_dataset", "eval_dataset", "processing_class", "callbacks", "optimizers"):
        assert name in params, (method, name)
    assert {"gradient_checkpointing", "report_to", "bf16"} <= set(inspect.signature(config_cls).parameters)


def test_continuous_batching_manager_keeps_what_the_daemon_start_uses():
    from transformers.generation.continuous_batching.continuous_api import ContinuousBatchingManager, OutputRouter

    assert tuple(inspect.signature(ContinuousBatchingManager._run_generation_loop).parameters) == (
        "self",
        "use_inference_mode",
    )
    assert {"deliver", "deliver_batch"} <= set(vars(OutputRouter))
    start = inspect.getsource(ContinuousBatchingManager.start)
    assert "self._generation_thread" in start and "background_thread_status.clear()" in start


def test_continuous_batching_still_switches_attention_where_the_cpu_loop_takes_over():
    """thirdparty.daemon_cb_manager overrides switch_to_cb_friendly_attn (called from __init__; stop undoes only
    what _original_attn_impl names, which the override leaves unset); infer/varlen_attention.py reads the pack's
    flash-varlen cumulative lengths."""
    from transformers.generation.continuous_batching.continuous_api import ContinuousBatchingManager
    from transformers.generation.continuous_batching.input_outputs import PagedAttentionArgs

    sig = inspect.signature(ContinuousBatchingManager.switch_to_cb_friendly_attn)
    assert tuple(sig.parameters) == ("self", "model", "auto_switch_to_flash")
    assert "self.switch_to_cb_friendly_attn(" in inspect.getsource(ContinuousBatchingManager.__init__)
    assert "set_attn_implementation(self._original_attn_impl)" in inspect.getsource(ContinuousBatchingManager.stop)
    assert {"cu_seq_lens_q", "cu_seq_lens_k"} <= set(PagedAttentionArgs.__annotations__)


def test_continuous_batching_steps_and_per_request_warpers_keep_what_lmforge_uses():
    """The step lock wraps `_generation_step` (the loop's one forward pass); the row-filtered top-k/top-p warpers
    give upstream's scores on every row: filtered rows as upstream filters them, rows with the filter off
    (top_k >= vocabulary, top_p 1.0) unchanged, as upstream leaves them."""
    from transformers import LogitsProcessorList, TopKLogitsWarper, TopPLogitsWarper
    from transformers.generation.continuous_batching import cb_logits_processors as cb
    from transformers.generation.continuous_batching.continuous_api import ContinuousBatchingManager

    assert tuple(inspect.signature(ContinuousBatchingManager._generation_step).parameters) == ("self",)
    assert "self._generation_step()" in inspect.getsource(ContinuousBatchingManager._generation_loop_body)

    def warpers() -> cb.ContinuousBatchingLogitsProcessorList:
        classic = LogitsProcessorList([TopKLogitsWarper(top_k=50), TopPLogitsWarper(top_p=0.5)])
        return cb.ContinuousBatchingLogitsProcessorList(classic, per_request_processors=True)

    class Manager:
        logit_processor = warpers()

    upstream, manager = warpers(), Manager()
    assert thirdparty.row_filtered_cb_warpers(manager) == 2
    assert manager.logit_processor.supported_keys == {"top_k": int, "top_p": float}
    rows = [(3, 1.0), (1 << 30, 0.3), (1 << 30, 1.0), (7, 0.2)]  # (top_k, top_p) per row
    state = [SimpleNamespace(logit_processor_kwargs={"top_k": k, "top_p": p}) for k, p in rows]
    requests = [cb.FutureRequestState(s, True, {}, 1) for s in state]
    scores = torch.randn(len(rows), 300, generator=torch.Generator().manual_seed(0))
    got, want = (
        w(None, scores.clone(), w.prepare_tensor_args(requests, torch.zeros(2, 8, dtype=torch.int32)))
        for w in (manager.logit_processor, upstream)
    )
    assert torch.equal(got, want) and torch.equal(got[2], scores[2])
    assert [int(torch.isfinite(row).sum()) for row in got[[0, 3]]] == [3, int(torch.isfinite(want[3]).sum())]


def test_gradio_launch_still_has_its_self_check_switch():
    """The web UI's page takes over 3 s to build its config on a loaded machine, and launch()'s self-check then
    raised "When localhost is not accessible, a shareable link must be created"; the web UI turns the check off."""
    import gradio as gr

    for name, value in thirdparty.GRADIO_NO_SELF_CHECK.items():
        assert inspect.signature(gr.Blocks.launch).parameters[name].default is not value
    assert "url_ok(self.local_url)" in inspect.getsource(gr.Blocks.launch)


def test_trl_grpo_still_pairs_left_padded_ids_with_the_processors_own_padding():
    """thirdparty.grpo_vl_processor: trl's GRPO training forward takes mm_token_type_ids from
    `processing_class(images=..., text=..., padding=True)` (the processor's padding side) beside prompt ids it pads on
    the left; once trl passes a padding side there itself, the processor hook can go."""
    from trl import GRPOTrainer
    from trl.data_utils import prepare_multimodal_messages

    from lmforge.multimodal.parts import parts_to_text

    src = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert 'self.processing_class(images=images, text=prompts_text, padding=True, return_tensors="pt")' in src
    assert 'padding_side="left"' in src
    # the rollout (train/rlhf.EngineRollout) gets each prompt's image blocks filled with the row's sources
    assert "prepare_multimodal_messages(prompt, images=image_list)" in src
    blocks = [{"type": "image"}, {"type": "text", "text": "and"}, {"type": "image"}]
    (msg,) = prepare_multimodal_messages([{"role": "user", "content": blocks}], images=["/a.png", "/b.png"])
    assert parts_to_text(msg["content"]) == ("<image>and<image>", [("image", "/a.png"), ("image", "/b.png")])
