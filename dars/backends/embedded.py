"""The embedded backend: the whole DARS loop in plain PyTorch on a Hugging Face model.

Recipe shape (as torchtune): ``setup()`` builds everything, ``train()`` runs the steps, ``save()``
writes a resumable checkpoint. One training step is docs/algorithm.md §2:

    prompts -> stage 1 (n each) -> score -> schedule -> stage 2 (extras) -> score -> merge
            -> filter groups -> advantages -> old log-probs -> ppo_epochs x optimiser steps

This module is the run: setup, checkpoints, the loop, one step's rollouts and validation. The
policy update (old log-probs to optimiser steps) is :mod:`dars.backends.embedded_update`; the
sampling is a :class:`dars.rollout.RolloutEngine` (:mod:`dars.rollout.hf`), kept in step with the
weights through its ``sync_weights``.

Determinism: every random draw is seeded from (seed, purpose, batch index), so the same config on
the same CPU gives the same metrics, and a run resumed from a checkpoint redraws exactly what the
uninterrupted run drew.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from dars import algorithm as algo
from dars import step
from dars.backends.embedded_update import PolicyUpdater
from dars.checkpoint import load_latest_valid, remove_unfinished, save_checkpoint
from dars.data import PromptStream, load_splits
from dars.evaluate import run_validation
from dars.model import autocast, compute_dtype, load_policy, resolve_device
from dars.rollout import Rollouts, SamplingParams, encode_prompt
from dars.rollout.hf import HFGenerateEngine
from dars.runlog import RunLog

log = logging.getLogger("dars")


def seed_everything(*key) -> None:
    """Seed python/numpy/torch from a tuple key (stable across processes, unlike hash())."""
    s = int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "little") % (2**63 - 1)
    random.seed(s)
    np.random.seed(s % (2**32))
    torch.manual_seed(s)


@dataclass
class TrainState:
    step: int = 0  # training steps with an update (the x-axis of every curve)
    batch_index: int = 0  # prompt batches consumed, skipped ones included
    optim_total: int = 0
    samples_seen: int = 0


def check(cfg: DictConfig) -> None:
    """Nothing beyond dars.config.validate: the embedded backend runs every config that passes it."""


def run(cfg: DictConfig, run_dir: Path) -> dict:
    trainer = EmbeddedTrainer(cfg, Path(run_dir))
    from dars.config import ConfigError
    from dars.data import DataError
    from dars.runlog import RunDirError

    try:
        trainer.setup()
        return trainer.train()
    except (ConfigError, DataError, RunDirError):
        raise  # bad input found in setup: dars.run says it in one line (exit 2); the run's status is untouched
    except BaseException as e:  # record why, for the sweep status table; then re-raise
        log.exception("run failed")  # Hydra's multirun keeps the exception; Slurm logs need the trace
        if trainer.runlog is not None:
            kind = "killed" if isinstance(e, KeyboardInterrupt) else "failed"
            try:
                trainer.runlog.set_status(kind, error=f"{type(e).__name__}: {e}")
            except OSError:  # e.g. the disk is full: readers see the run's lock free and say "interrupted"
                log.warning("could not record the failure in status.json")
        raise
    finally:
        trainer.cleanup()


# Step-0 validations already computed in this process. In a local multirun every run with the
# same base model, seed and validation settings evaluates the same weights with the same random
# draws (seed_everything), so the second one would compute the very same numbers: it reuses them.
# Training never reads the global RNG state a validation leaves (each stage reseeds), so nothing
# else changes. Keyed on everything that decides the result (EmbeddedTrainer._base_eval_key).
_BASE_EVALS: dict[str, tuple[list[dict], dict]] = {}


class EmbeddedTrainer:
    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg = cfg
        self.run_dir = run_dir
        self.scorer = None
        self.runlog = None

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg = self.cfg
        self.runlog = RunLog(
            self.run_dir,
            cfg.logger.wandb,
            run_name=cfg.run_name,
            config=OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True),
        )
        seed_everything(cfg.seed, "setup")
        self.device = resolve_device(cfg.model.device)
        self.amp_dtype = compute_dtype(cfg.model.dtype, self.device)
        self.autocast = partial(autocast, self.device, self.amp_dtype)

        self.model, self.tok, self.source = load_policy(cfg, cfg.paths.cache_dir, cfg.seed)
        # after the tokenizer: parquet prompts are rendered (and length-filtered) with it
        train, self.val_problems = load_splits(cfg.data, self.tok, cfg.rollout.max_prompt_length)
        self.stream = PromptStream(train, cfg.train.batch_size, cfg.data.shuffle, cfg.seed)

        self.model.to(self.device)
        self.model.config.use_cache = True  # sampling reuses keys/values; the update passes use_cache=False
        if cfg.model.gradient_checkpointing:
            # only in train mode, i.e. the update's forward passes; non-reentrant: no warnings about
            # inputs without grad, and the same gradients as without it (tests/test_gradient_checkpointing.py)
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        n_params = sum(p.numel() for p in self.model.parameters())
        log.info(
            "policy: %s (%.2fM parameters) on %s, compute %s", self.source, n_params / 1e6, self.device, self.amp_dtype
        )
        self.ref_model = None
        if cfg.algorithm.kl_coef > 0:
            self.ref_model = copy.deepcopy(self.model).eval().requires_grad_(False)

        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.train.lr, betas=tuple(cfg.train.betas), weight_decay=cfg.train.weight_decay
        )
        self.updater = PolicyUpdater(
            cfg, self.model, self.optimizer, self.ref_model, self.tok.pad_token_id, self.device, self.autocast
        )
        self.engine = self._rollout_engine()
        from dars.rewards import RewardScorer

        self.scorer = RewardScorer(
            version=cfg.reward.version, num_workers=cfg.reward.num_workers, timeout_s=cfg.reward.timeout_s
        )
        self._prompt_cache: dict[str, list[int]] = {}
        self.val_prompt_ids = [self._encode(p.prompt) for p in self.val_problems]

        self.state = TrainState()
        self.done = self.runlog.completed_summary(cfg.train.total_steps)  # None unless already finished
        if self.done is None:
            self._resume()

    def _encode(self, text: str) -> list[int]:
        if text not in self._prompt_cache:
            ids = encode_prompt(self.tok, text)
            self._prompt_cache[text] = ids[-self.cfg.rollout.max_prompt_length :]
        return self._prompt_cache[text]

    def _sampling(self, temperature: float, top_p: float) -> SamplingParams:
        r = self.cfg.rollout
        return SamplingParams(temperature=temperature, top_p=top_p, top_k=r.top_k, max_new_tokens=r.max_response_length)

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> None:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "train_state": asdict(self.state),
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
        }
        save_checkpoint(self.run_dir, self.state.step, state, keep=self.cfg.train.keep_checkpoints)

    def _resume(self) -> None:
        """Roll the run directory back to its newest valid checkpoint (none: step 0) and restore it.

        The checkpoint is the commit point of the run's transaction log: whatever was logged after
        it (metrics, validations, a torn line, a half-written checkpoint) is dropped and recomputed
        exactly, so a kill at any instant neither duplicates nor loses a record."""
        remove_unfinished(self.run_dir)
        found = load_latest_valid(self.run_dir)
        if found is not None:
            path, ckpt = found
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.state = TrainState(**ckpt["train_state"])
            self.engine.sync_weights()  # the engine samples from the restored weights
        dropped = self.runlog.truncate_after(self.state.step)
        if found is not None:
            log.info(
                "resumed from %s (step %d, %d prompt batches consumed%s)",
                path,
                self.state.step,
                self.state.batch_index,
                f"; {dropped} later step record(s) dropped, to be recomputed" if dropped else "",
            )
        elif dropped:
            log.warning(
                "no valid checkpoint in %s: starting again from step 0; the %d step record(s) logged "
                "before are dropped and will be recomputed",
                self.run_dir / "checkpoints",
                dropped,
            )

    def _rollout_engine(self):
        """rollout.engine: HF generate on the training model itself, or a colocated vLLM that the
        trainer keeps in sync (dars/rollout/vllm.py)."""
        r = self.cfg.rollout
        if r.engine == "hf":
            return HFGenerateEngine(self.model, self.tok, self.device, self.autocast, r.micro_batch_size)
        from dars.rollout.vllm import VLLMEngine

        model_dir = self.source
        if not Path(model_dir).is_dir():  # random init: vLLM builds its model from a folder
            model_dir = str(self.run_dir / "vllm_model")
            self.model.save_pretrained(model_dir)
            self.tok.save_pretrained(model_dir)
        dtype = str(self.amp_dtype).removeprefix("torch.")  # vLLM samples in the compute dtype
        return VLLMEngine(
            self.model,
            model_dir,
            max_model_len=r.max_prompt_length + r.max_response_length,
            max_num_seqs=r.vllm.max_num_seqs,
            gpu_memory_utilization=r.vllm.gpu_memory_utilization,
            dtype=dtype if r.vllm.dtype == "auto" else r.vllm.dtype,
            enable_sleep_mode=r.vllm.enable_sleep_mode,
        )

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict:
        cfg, st = self.cfg, self.state
        total = cfg.train.total_steps
        if self.done is not None:
            log.info("run already completed at step %d; nothing to do", self.done["step"])
            return self.done
        self.runlog.set_status(
            "running", step=st.step, total_steps=total, experiment=cfg.experiment_name, seed=cfg.seed, error=None
        )
        if st.step == 0 and cfg.train.val_before_train and not self._evaluated(0):
            self.validate()

        from tqdm.auto import tqdm

        bar = tqdm(
            total=total,
            initial=st.step,
            desc=cfg.run_name,
            unit="step",
            dynamic_ncols=True,
            disable=not cfg.train.progress_bar,
        )
        while st.step < total and self.stream.epoch_of(st.batch_index) < cfg.train.total_epochs:
            record = self.training_step()
            if record is None:
                continue
            self.runlog.log_step(record.to_json())
            bar.update(1)
            bar.set_postfix(
                {
                    "acc": f"{record.acc_stage1:.2f}",
                    "stage2": record.rollouts_stage2,
                    "kept": record.groups_kept,
                    "H": f"{record.entropy_token_mean:.2f}",
                }
            )
            if cfg.train.test_freq > 0 and st.step % cfg.train.test_freq == 0:
                self.validate()
            if cfg.train.save_freq > 0 and st.step % cfg.train.save_freq == 0:
                self.save()
        bar.close()
        if st.step < total:
            log.warning(
                "stopped at step %d of %d: train.total_epochs=%d exhausted", st.step, total, cfg.train.total_epochs
            )
        if not self._evaluated(st.step):
            self.validate()
        self.save()
        self.runlog.set_status("completed", step=st.step)
        return self.runlog.final_summary()

    def _evaluated(self, step: int) -> bool:
        return any(s["step"] == step for s in self.runlog.eval_summaries())

    def training_step(self) -> step.StepRecord | None:
        cfg, st = self.cfg, self.state
        a, r = cfg.algorithm, cfg.rollout
        t_step = time.perf_counter()
        problems = self.stream.batch(st.batch_index)
        epoch = self.stream.epoch_of(st.batch_index)
        batch_index = st.batch_index
        st.batch_index += 1
        st.samples_seen += len(problems)
        prompt_ids = [self._encode(p.prompt) for p in problems]
        golds = [p.answer for p in problems]
        params = self._sampling(r.temperature, r.top_p)

        def sample(stage: int, counts: np.ndarray) -> Rollouts:
            seed_everything(cfg.seed, f"stage{stage}", batch_index)  # each stage's draws from its own key
            return self.engine.generate(prompt_ids, counts.tolist(), params)

        def score(rows: Rollouts) -> tuple[np.ndarray, np.ndarray]:
            return np.array(rows.prompt_index), self._score(rows, golds)

        two = step.two_stage_rollout(sample, score, len(problems), r.n, a)
        ro = two.stage1
        if two.stage2 is not None:
            ro.extend(two.stage2)  # same prompt index = same group
        fields = step.rollout_fields(two, np.array(ro.lengths), r.max_response_length)
        if not two.stats.keep.any():
            log.info(
                "batch %d: every group was all-correct or all-wrong; skipped (step stays %d)", batch_index, st.step
            )
            return None

        # advantages over merged groups; keep whole groups, ordered by prompt (mini-batches split
        # between groups, never inside one)
        group = two.group
        adv = algo.group_advantages(group, two.rewards, a.use_std)
        kept = [i for i in np.argsort(group, kind="stable") if two.stats.keep[group[i]]]
        t0 = time.perf_counter()
        self.engine.sleep()  # the step's sampling is done: its KV cache frees memory for the update
        upd = self.updater.update(ro, adv, group, kept)
        t_update = time.perf_counter() - t0
        if upd["optim_steps"]:
            # nothing samples between the optimiser steps of one update: one sync after them
            self.engine.sync_weights()
        else:
            self.engine.wake_up()  # same weights: the engine only needs its memory back
        st.optim_total += upd["optim_steps"]
        st.step += 1
        return step.StepRecord(
            step=st.step,
            epoch=epoch,
            **fields,
            **upd,
            optim_total=st.optim_total,
            lr=self.optimizer.param_groups[0]["lr"],
            samples_seen=st.samples_seen,
            time_update=t_update,
            time_step=time.perf_counter() - t_step,
        )

    def _score(self, ro: Rollouts, golds: list[str]) -> np.ndarray:
        texts = self.tok.batch_decode(ro.response_ids, skip_special_tokens=False)
        return self.scorer.score(texts, [golds[j] for j in ro.prompt_index]).rewards.astype(np.float64)

    # ------------------------------------------------------------------ validation
    def _base_eval_key(self) -> str:
        """Everything a step-0 validation depends on: the base weights, the validation set, the
        sampling and its random draws (seed, chunking), the reward."""
        cfg = self.cfg
        part = lambda node, drop=(): {
            k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in drop
        }
        spec = {
            "source": self.source,
            "seed": cfg.seed,
            "model": part(cfg.model),
            "data": part(cfg.data),
            "eval": part(cfg.eval),
            "reward": part(cfg.reward, ("num_workers",)),
            "rollout": part(cfg.rollout, ("n", "temperature", "top_p")),
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()

    def validate(self) -> dict:
        cfg, e = self.cfg, self.cfg.eval
        seed_everything(cfg.seed, "validation", self.state.step)
        t0 = time.perf_counter()
        key = self._base_eval_key() if self.state.step == 0 else None
        if key in _BASE_EVALS:  # the runs of a local sweep share their base model's evaluation
            records, summary = copy.deepcopy(_BASE_EVALS[key])
            log.info(
                "validation at step 0: identical to an earlier run's in this process (same base "
                "model, seed and validation settings), reused"
            )
        else:
            records, summary = run_validation(
                self.engine,
                self.scorer,
                self.tok,
                self.val_problems,
                self.val_prompt_ids,
                e.n_val,
                self._sampling(e.temperature, e.top_p),
                save_responses=e.save_responses,
                max_k=e.max_k,
            )
            if key is not None:
                _BASE_EVALS[key] = copy.deepcopy((records, summary))
        summary = {
            "step": self.state.step,
            "n_val": e.n_val,
            "temperature": e.temperature,
            "top_p": e.top_p,
            "max_response_length": cfg.rollout.max_response_length,
            **summary,
            "time/eval": time.perf_counter() - t0,
        }
        self.runlog.log_eval(self.state.step, records, summary)
        log.info(
            "validation at step %d: avg@%d %.3f, pass@%d %.3f",
            self.state.step,
            e.n_val,
            summary[f"val/all/avg@{e.n_val}"],
            e.n_val,
            summary[f"val/all/pass@{e.n_val}"],
        )
        return summary

    def cleanup(self) -> None:
        if self.scorer is not None:
            self.scorer.close()
        if self.runlog is not None:
            self.runlog.close()
