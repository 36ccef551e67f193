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
import random
import shutil
from pathlib import Path
from typing import Any

from lmforge.errors import UserError


class ValueHead:
    """A linear layer from the last hidden state to a scalar value per token."""

    def __init__(self, hidden: int):
        import torch

        self.linear = torch.nn.Linear(hidden, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)


def _reward_model(path: str, dtype: Any) -> Any:
    """A sequence-classification model; an `rlhf --rlhf_type rm` LoRA checkpoint is merged onto its base."""
    from transformers import AutoModelForSequenceClassification

    from lmforge.infer.restore import read_run_args
    from lmforge.models.loader import resolve_model_dir

    p = Path(path)
    if (p / "adapter_config.json").is_file():
        saved = read_run_args(p) or {}
        if not saved.get("model_dir"):
            raise UserError(f"--reward_model {path}: adapter without args.json naming its base model")
        from peft import PeftModel

        base = AutoModelForSequenceClassification.from_pretrained(saved["model_dir"], num_labels=1, dtype=dtype)
        model = PeftModel.from_pretrained(base, str(p)).merge_and_unload()
    else:
        model = AutoModelForSequenceClassification.from_pretrained(resolve_model_dir(path), num_labels=1, dtype=dtype)
    return model.eval().requires_grad_(False)


def _token_logprobs(logits: Any, ids: Any) -> Any:
    import torch

    return torch.log_softmax(logits.float(), -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def _gae(rewards: Any, values: Any, mask: Any, gamma: float, lam: float) -> tuple[Any, Any]:
    import torch

    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0])
    for t in reversed(range(rewards.shape[1])):
        nxt = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros(rewards.shape[0])
        delta = rewards[:, t] + gamma * nxt * mask[:, t] - values[:, t]
        last = delta + gamma * lam * last * mask[:, t]
        adv[:, t] = last
    returns = adv + values
    m = mask.bool()
    mean, std = adv[m].mean(), adv[m].std().clamp_min(1e-8)
    return ((adv - mean) / std) * mask, returns


class PPO:
    def __init__(self, args: Any, setup: Any, policy: Any, reward: Any, run_dir: Path):
        import torch

        self.args, self.r, self.setup, self.policy, self.reward, self.run_dir = (
            args,
            args.rlhf,
            setup,
            policy,
            reward,
            run_dir,
        )
        self.tok = setup.tokenizer
        hidden = policy.get_base_model().config.hidden_size
        self.value = ValueHead(hidden).linear
        params = [p for p in policy.parameters() if p.requires_grad] + list(self.value.parameters())
        lr = args.train.learning_rate or 1e-4
        self.opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        self.params = params
        self.stop_ids = setup.template.stop_ids()

    def rollout(self, prompts: list[list[dict]]) -> dict[str, Any]:
        import torch

        ids = [self.setup.template.prompt_ids(p) for p in prompts]
        width = max(len(x) for x in ids)
        pad = self.tok.pad_token_id
        inp = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
        att = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
        self.policy.eval()
        with torch.no_grad():
            seq = self.policy.generate(
                input_ids=inp,
                attention_mask=att,
                do_sample=True,
                temperature=self.r.temperature,
                top_k=None,
                top_p=1.0,
                max_new_tokens=self.r.max_completion_length,
                eos_token_id=self.stop_ids,
                pad_token_id=pad,
            )
        resp = seq[:, width:]
        # mask: response tokens up to and including the first stop token
        mask = torch.ones_like(resp, dtype=torch.float)
        for i, row in enumerate(resp.tolist()):
            cut = next((k + 1 for k, t in enumerate(row) if t in self.stop_ids), len(row))
            mask[i, cut:] = 0
        full_att = torch.cat([att, mask.long()], 1)
        texts = [self.tok.decode(r[: int(m.sum())], skip_special_tokens=True) for r, m in zip(resp, mask)]
        return {"seq": seq, "att": full_att, "width": width, "mask": mask, "texts": texts}

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
        total = torch.zeros(len(roll["texts"]))
        for w, fn in zip(weights, fns):
            total += w * torch.tensor(fn(roll["texts"], prompts=prompts, **extras), dtype=torch.float)
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
        rewards[torch.arange(len(last)), last] += scores
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
            grad = torch.nn.utils.clip_grad_norm_(self.params, self.args.train.max_grad_norm)
            self.opt.step()
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

    def save(self, step: int, args_json: dict) -> Path:
        import torch
        from safetensors.torch import save_file

        final = self.run_dir / f"checkpoint-{step}"
        tmp = self.run_dir / ".staging" / final.name
        shutil.rmtree(tmp, ignore_errors=True)
        self.policy.save_pretrained(tmp)
        save_file({k: v.contiguous() for k, v in self.value.state_dict().items()}, tmp / "value_head.safetensors")
        torch.save({"optimizer": self.opt.state_dict(), "step": step}, tmp / "ppo_state.pt")
        self.tok.save_pretrained(tmp)
        (tmp / "args.json").write_text(json.dumps(args_json, ensure_ascii=False, indent=2, default=str))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        return final


def run_ppo(args: Any) -> int:
    import torch
    import transformers
    from peft import PeftModel, get_peft_model

    from lmforge.data.pipeline import load_data, refuse_if_mostly_dropped
    from lmforge.models.loader import load_model
    from lmforge.models.setup import setup_tokenizer
    from lmforge.train.output import draw_plots, make_run_dir, write_args_json
    from lmforge.train.rlhf import to_trl_row
    from lmforge.tuners.lora import lora_config

    r, t = args.rlhf, args.train
    if args.tuner.tuner_type != "lora":
        raise UserError("PPO here trains LoRA policies (the frozen base is the reference)", hint="--tuner_type lora")
    if not r.reward_model and not r.reward_funcs:
        raise UserError("PPO needs --reward_model (an rm checkpoint) or --reward_funcs")
    transformers.set_seed(t.seed)
    setup = setup_tokenizer(args.model, args.template)
    data = load_data(args.data, use_hf=args.model.use_hf)
    refuse_if_mostly_dropped(data.parts)
    rows = [to_trl_row(json.loads(x), "grpo", setup.template) for x in data.train["row"]]
    base = load_model(setup.model_dir, dtype=torch.float32)
    policy = (
        PeftModel.from_pretrained(base, args.tuner.adapters[0], is_trainable=True)
        if args.tuner.adapters
        else get_peft_model(base, lora_config(args.tuner))
    )
    reward = _reward_model(r.reward_model, torch.float32) if r.reward_model else None
    run_dir = make_run_dir(t.output_dir, t.add_version)
    args_json = write_args_json(
        run_dir / "args.json",
        args,
        {
            "stage": "rlhf",
            "model_dir": str(setup.model_dir),
            "template": setup.template_name,
            "system": setup.template.system,
            "run_dir": str(run_dir),
        },
    )
    setup.tokenizer.chat_template = setup.template.jinja
    ppo = PPO(args, setup, policy, reward, run_dir)
    steps = t.max_steps if t.max_steps > 0 else int(t.num_train_epochs * len(rows) / t.per_device_train_batch_size)
    rng = random.Random(t.seed)
    log = run_dir / "logging.jsonl"
    print(f"[lmforge] ppo on {len(rows)} prompts for {steps} steps; run dir: {run_dir}")
    for step in range(1, steps + 1):
        batch = rng.sample(rows, min(t.per_device_train_batch_size, len(rows)))
        extras = {k: [b.get(k) for b in batch] for k in batch[0] if k != "prompt"}
        stats = ppo.step([b["prompt"] for b in batch], extras)
        if step % t.logging_steps == 0 or step == 1 or step == steps:
            with log.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"global_step": step, "max_steps": steps, **stats}) + "\n")
            print(f"[ppo] step {step}/{steps} " + " ".join(f"{k}={v:.4g}" for k, v in stats.items()))
        if step % t.save_steps == 0 or step == steps:
            ppo.save(step, args_json)
            draw_plots(run_dir)
    print(f"[lmforge] last checkpoint: {run_dir / f'checkpoint-{steps}'}")
    return 0
