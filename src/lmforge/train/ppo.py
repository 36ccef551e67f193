"""PPO for language models (trl 1.x dropped its PPOTrainer), following the published recipe
(Ziegler et al. 2019; Ouyang et al. 2022; "The N+ Implementation Details of RLHF with PPO", Huang et al. 2024):

1. roll out: sample a completion per prompt from the policy;
2. score: the reward model's scalar (or --reward_funcs) on the whole answer, added at its last token; a per-token
   KL penalty `-kl_coef * (logp_policy - logp_ref)` everywhere, the reference being the policy with LoRA disabled;
3. GAE (gamma, lam) over the per-token rewards with a value head on the policy's last hidden state;
4. `num_ppo_epochs` passes of clipped policy loss + `vf_coef` * clipped value loss.

Only LoRA policies are supported: the frozen base doubles as the reference, so no second model is held.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.errors import UserError, writing
from lmforge.train import rows
from lmforge.train.methods import OWN_TRAINER_ONLY, register_method

if TYPE_CHECKING:
    from lmforge.train.job import Job

STATE = "ppo_state.pt"  # optimizer, scheduler and RNG states: what an exact resume needs besides the weights


def _reward_model(path: str, dtype: Any) -> Any:
    """A one-logit sequence classifier; an `rlhf --rlhf_type rm` LoRA checkpoint is merged onto its base."""
    from lmforge.models.loader import load_model, resolve_model_dir
    from lmforge.runargs import read_run_args

    p = Path(path)
    if (p / "adapter_config.json").is_file():
        saved = read_run_args(p)
        if saved is None or not saved.model_dir:
            raise UserError(f"--reward_model {path}: adapter without args.json naming its base model")
        from peft import PeftModel

        base = load_model(Path(saved.model_dir), dtype=dtype, task="reward")
        model = PeftModel.from_pretrained(base, str(p)).merge_and_unload()
    else:
        model = load_model(resolve_model_dir(path), dtype=dtype, task="reward")
    return model.eval().requires_grad_(False)


def _token_logprobs(logits: Any, ids: Any) -> Any:
    import torch

    return torch.log_softmax(logits.float(), -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def _gae(rewards: Any, values: Any, mask: Any, gamma: float, lam: float) -> tuple[Any, Any]:
    import torch

    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        nxt = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * nxt * mask[:, t] - values[:, t]
        last = delta + gamma * lam * last * mask[:, t]
        adv[:, t] = last
    returns = adv + values
    m = mask.bool()
    mean, std = adv[m].mean(), adv[m].std().clamp_min(1e-8)
    return ((adv - mean) / std) * mask, returns


class PPO:
    def __init__(self, job: Job, policy: Any, reward: Any):
        import torch

        self.job, self.r, self.setup, self.policy, self.reward = job, job.args.rlhf, job.setup, policy, reward
        self.run_dir = job.run_dir
        self.stop: Any = None  # a train.stop.StopRequest, set by the driver
        self.tok = job.setup.tokenizer
        self.device = next(policy.parameters()).device
        # the value head: hidden state -> scalar per token, zero at the start (so are the first advantages' baselines)
        self.value = torch.nn.Linear(policy.get_base_model().config.hidden_size, 1).to(self.device)
        torch.nn.init.zeros_(self.value.weight)
        torch.nn.init.zeros_(self.value.bias)
        self.params = [p for p in policy.parameters() if p.requires_grad] + list(self.value.parameters())
        t = job.args.train
        self.opt = torch.optim.AdamW(
            self.params, lr=job.learning_rate, betas=(0.9, t.adam_beta2), weight_decay=t.weight_decay
        )
        from lmforge.infer.pt import PtEngine

        self.engine = PtEngine(
            policy, job.setup.template, max_batch_size=max(16, job.args.train.per_device_train_batch_size)
        )

    def rollout(self, prompts: list[list[dict]]) -> dict[str, Any]:
        """Sample one completion per prompt through the inference engine (the same sampling code as infer and
        deploy), then lay prompt + completion out as one left-padded batch for the training forwards."""
        import torch

        from lmforge.infer.engine import SamplingConfig

        ids = [self.engine.frontend.prompt_ids(p) for p in prompts]
        r = self.r
        cfg = SamplingConfig(r.max_completion_length, r.temperature, top_p=r.top_p, top_k=r.top_k)
        done = self.engine.generate(ids, cfg)
        width, length = max(len(x) for x in ids), max(max(len(c.token_ids) for c in done), 1)
        pad = self.engine.frontend.pad_id
        # the response mask covers each completion up to and including its stop token
        rows_ = [
            [pad] * (width - len(p)) + p + c.token_ids + [pad] * (length - len(c.token_ids)) for p, c in zip(ids, done)
        ]
        att = [
            [0] * (width - len(p)) + [1] * (len(p) + len(c.token_ids)) + [0] * (length - len(c.token_ids))
            for p, c in zip(ids, done)
        ]
        seq = torch.tensor(rows_, device=self.device)
        full_att = torch.tensor(att, device=self.device)
        mask = full_att[:, width:].float()
        return {"seq": seq, "att": full_att, "width": width, "mask": mask, "texts": [c.text for c in done]}

    def _forward(self, seq: Any, att: Any, width: int) -> tuple[Any, Any]:
        out = self.policy(input_ids=seq, attention_mask=att, output_hidden_states=True)
        logits = out.logits[:, width - 1 : -1]
        values = self.value(out.hidden_states[-1][:, width - 1 : -1].float()).squeeze(-1)
        return _token_logprobs(logits, seq[:, width:]), values

    def score(self, roll: dict, prompts: list, extras: dict[str, list]) -> Any:
        import torch

        if self.reward is not None:
            with torch.no_grad():
                return self.reward(input_ids=roll["seq"], attention_mask=roll["att"]).logits[:, 0].float()
        from lmforge.train.rewards import resolve_rewards

        fns = resolve_rewards(self.r.reward_funcs, self.r)
        weights = self.r.reward_weights or [1.0] * len(fns)
        total = torch.zeros(len(roll["texts"]), device=self.device)
        for w, fn in zip(weights, fns):
            scores = torch.tensor(fn(roll["texts"], prompts=prompts, **extras), dtype=torch.float, device=self.device)
            total += w * scores
        return total

    def step(self, prompts: list, extras: dict[str, list]) -> dict[str, float]:
        import torch

        roll = self.rollout(prompts)
        seq, att, width, mask = roll["seq"], roll["att"], roll["width"], roll["mask"]
        scores = self.score(roll, prompts, extras)
        with torch.no_grad():
            old_logp, old_values = self._forward(seq, att, width)
            with self.policy.disable_adapter():
                ref_logp = _token_logprobs(
                    self.policy(input_ids=seq, attention_mask=att).logits[:, width - 1 : -1], seq[:, width:]
                )
        kl = (old_logp - ref_logp) * mask
        rewards = -self.r.kl_coef * kl
        last = (mask.sum(1).long() - 1).clamp_min(0)
        rewards[torch.arange(len(last), device=self.device), last] += scores
        adv, returns = _gae(rewards, old_values * mask, mask, self.r.gamma, self.r.lam)
        self.policy.train()
        for _ in range(self.r.num_ppo_epochs):
            logp, values = self._forward(seq, att, width)
            ratio = torch.exp(logp - old_logp)
            pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - self.r.cliprange, 1 + self.r.cliprange))
            v_clip = old_values + (values - old_values).clamp(-self.r.cliprange_value, self.r.cliprange_value)
            vf = 0.5 * torch.max((values - returns) ** 2, (v_clip - returns) ** 2)
            n = mask.sum().clamp_min(1)
            pg_loss, vf_loss = (pg * mask).sum() / n, (vf * mask).sum() / n
            loss = pg_loss + self.r.vf_coef * vf_loss
            self.opt.zero_grad()
            loss.backward()
            grad = torch.nn.utils.clip_grad_norm_(self.params, self.job.args.train.max_grad_norm)
            self.opt.step()
        self.scheduler.step()
        if self.r.log_completions:
            with (self.run_dir / "completions.jsonl").open("a", encoding="utf-8") as f:
                for p, c, s in zip(prompts, roll["texts"], scores.tolist()):
                    f.write(json.dumps({"prompt": p, "completion": c, "reward": s}, ensure_ascii=False) + "\n")
        return {
            "loss": loss.item(),
            "policy_loss": pg_loss.item(),
            "value_loss": vf_loss.item(),
            "reward": float(scores.mean()),
            "kl": float(kl.sum(1).mean()),
            "grad_norm": float(grad),
            "response_length": float(mask.sum(1).mean()),
        }

    def save(self, step: int, rng: random.Random, log: list[dict]) -> Path:
        """checkpoint-N appears whole or not at all: the adapter, value head, optimizer/scheduler/RNG states,
        trainer_state.json (what --resume_from_checkpoint checks) and args.json."""
        import torch
        from safetensors.torch import save_file

        from lmforge.runargs import write_run_args

        final = self.run_dir / f"checkpoint-{step}"
        tmp = self.run_dir / ".staging" / final.name
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            with writing(final.name, self.run_dir):
                self.policy.save_pretrained(tmp)
                save_file(
                    {k: v.contiguous() for k, v in self.value.state_dict().items()}, tmp / "value_head.safetensors"
                )
                state = {"optimizer": self.opt.state_dict(), "scheduler": self.scheduler.state_dict(), "step": step}
                torch.save({**state, "torch_rng": torch.get_rng_state(), "python_rng": rng.getstate()}, tmp / STATE)
                self.tok.save_pretrained(tmp)
                (tmp / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": log}, indent=1))
                write_run_args(tmp / "args.json", self.job.run_args)
                shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
        finally:
            shutil.rmtree(self.run_dir / ".staging", ignore_errors=True)  # nothing half-written stays behind
        limit = self.job.args.train.save_total_limit
        if limit:
            done = sorted(self.run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
            for old in done[:-limit]:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def resume(self, ckpt: str, rng: random.Random) -> int:
        """Weights and every state from a checkpoint of this PPO; returns its step."""
        import torch
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        path = Path(ckpt)
        if not (path / STATE).is_file():
            raise UserError(f"--resume_from_checkpoint {ckpt}: not a PPO checkpoint (no {STATE})")
        set_peft_model_state_dict(self.policy, load_file(path / "adapter_model.safetensors"))
        self.value.load_state_dict(load_file(path / "value_head.safetensors"))
        state = torch.load(path / STATE, weights_only=False)
        self.opt.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        rng.setstate(state["python_rng"])
        return int(state["step"])

    def train(self, resume_from_checkpoint: str | None = None) -> None:
        from transformers import get_scheduler

        from lmforge.train.output import draw_plots

        t = self.job.args.train
        prompts = rows.convert(self.job.data.train, rows.prompt, self.setup.template, "ppo").to_list()
        per_epoch = len(prompts) / t.per_device_train_batch_size
        steps = t.max_steps if t.max_steps > 0 else int(t.num_train_epochs * per_epoch)
        warmup = int(t.warmup_ratio * steps) if t.warmup_ratio < 1 else int(t.warmup_ratio)
        self.scheduler = get_scheduler(t.lr_scheduler_type, self.opt, warmup, steps)
        rng = random.Random(t.seed)
        start = self.resume(resume_from_checkpoint, rng) if resume_from_checkpoint else 0
        log: list[dict] = []
        board = None
        if "tensorboard" in self.job.report_to:  # the same runs/ folder the Trainer's integration writes
            from torch.utils.tensorboard import SummaryWriter

            board = SummaryWriter(str(self.run_dir / "runs"))
        print(f"[lmforge] ppo on {len(prompts)} prompts for {steps} steps")
        for step in range(start + 1, steps + 1):
            batch = rng.sample(prompts, min(t.per_device_train_batch_size, len(prompts)))
            extras = {k: [b.get(k) for b in batch] for k in batch[0] if k != "prompt"}
            stats = self.step([b["prompt"] for b in batch], extras)
            if step % t.logging_steps == 0 or step == 1 or step == steps:
                row = {"global_step": step, "max_steps": steps, **stats}
                log.append(row)
                with (self.run_dir / "logging.jsonl").open("a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"[ppo] step {step}/{steps} " + " ".join(f"{k}={v:.4g}" for k, v in stats.items()))
                for key, value in stats.items() if board else ():
                    board.add_scalar(f"train/{key}", value, step)
            stopping = self.stop is not None and self.stop.agreed(1)
            if step % t.save_steps == 0 or step == steps or stopping:
                self.save(step, rng, log)
                draw_plots(self.run_dir)
            if stopping:
                self.stop.saved_step = step
                break
        if board is not None:
            board.close()


_USES = {"max_completion_length", "temperature", "reward_funcs", "reward_weights", "reward_model", "log_completions"}
_USES |= {"num_ppo_epochs", "kl_coef", "cliprange", "cliprange_value", "vf_coef", "gamma", "lam"}
_USES |= {"soft_max_length", "soft_cache_length", "top_p", "top_k"}
# our own loop: one process, no evaluation, no Trainer integrations
_LOOP_LACKS = {"gradient_accumulation_steps", "eval_steps", "per_device_eval_batch_size", "val_dataset"}
_LOOP_LACKS |= {"split_dataset_ratio", "deepspeed", "fsdp", "dataloader_num_workers"}
_LOOP_LACKS |= {
    "lorap_lr_ratio",
    "use_galore",
    "lisa_activated_layers",
    "loss_type",
    "callbacks",
    "optimizer",
    "trainer",
}


# fp32 unless --torch_dtype says otherwise: its eager rollout + backward loop measured 9x slower in bf16 on CPU
# (2 steps of the embedded model: 3.5 min against 24 s), where our Trainer's autocast paths gain from bf16
@register_method(
    "ppo",
    stage="rlhf",
    default_torch_dtype="float32",
    unsupported=frozenset(OWN_TRAINER_ONLY | _LOOP_LACKS),
    rlhf_uses=frozenset(_USES),
)
def build(job: Job) -> PPO:
    from lmforge.train.job import record
    from lmforge.train.loading import load_policy

    others = [name for name in job.args.train.report_to if name not in ("tensorboard", "none")]
    if others:
        raise UserError(f"--report_to {others[0]} is not supported by rlhf --rlhf_type ppo", hint="use tensorboard")
    if getattr(job.setup.template, "takes_media", False):  # its rollouts and scoring are text-only
        raise UserError(
            "--rlhf_type ppo does not take vision-language models in this lmforge version",
            hint="use --rlhf_type grpo (images in the rollouts), dpo, kto or orpo",
        )
    policy = load_policy(job)
    r = job.args.rlhf
    reward = _reward_model(r.reward_model, job.precision.dtype).to(policy.device) if r.reward_model else None
    record(job, {})
    return PPO(job, policy, reward)
