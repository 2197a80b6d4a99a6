"""DARS on verl 0.9.1: the trainer that runs inside verl's Ray driver (``backend=verl``).

Started by :mod:`dars.backends.verl` as its own process::

    python -m dars.backends.verl.trainer <verl overrides ...>      # Hydra app over conf/dars_ppo.yaml

It subclasses verl's ``RayPPOTrainer`` (the synchronous "v0" trainer, docs/verl.md §1.1) without
forking verl: workers, vLLM rollout, FSDP update and checkpoints are verl's own; rewards are scored
per batch instead of per response (dars.backends.verl.reward). What is DARS here is small and comes
from the same code as the embedded backend:

    dars_rollout()     stage 1 (n per prompt) -> p_hat -> stage 2 (dars.schedules) from the same
                       snapshot -> merge by uid -> group filter (dars.algorithm.filter_groups); each
                       stage's rows scored in one batch call (dars.backends.verl.reward)
    pad_for_update()   rows that carry zero loss so the batch divides the data-parallel size
    set_advantages()   dars.algorithm.group_advantages over the merged, unequal groups
    _update_actor()    full-batch mode: one mini-batch = the whole (variable) batch, ppo_epochs times
    fit() / _validate()  the loop, writing the run directory (docs/run-format.md) through dars.runlog

Deviations from the embedded backend, all forced by verl's worker API: the entropy bonus uses the
actor's ``loss_agg_mode`` (verl aggregates it like the policy loss) rather than a token mean; the DARS
normaliser is verl's ``seq-mean-token-sum-norm`` with ``loss_scale_factor = max_response_length``
(sum_t / L_max, mean over real sequences), which is the embedded ``dars`` mode.
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import numpy as np
import ray
import torch
from omegaconf import OmegaConf
from verl import DataProto
from verl.protocol import pad_dataproto_to_divisor, unpad_dataproto
from verl.trainer.main_ppo_v0 import BaseTaskRunner
from verl.trainer.ppo.ray_trainer import RayPPOTrainer, compute_response_mask
from verl.utils import tensordict_utils as tu
from verl.utils.metric import reduce_metrics
from verl.utils.py_functional import rename_dict
from verl.workers.utils.padding import left_right_2_no_padding

from dars import algorithm as algo
from dars import step
from dars.backends.verl.reward import BatchReward
from dars.evaluate import summarize
from dars.metrics import entropy_means
from dars.runlog import RunLog, read_jsonl

log = logging.getLogger("dars.verl")

PAD_UID = "dars-padding"


def uid_groups(uids: np.ndarray, order: list[str]) -> np.ndarray:
    """Group index of every row: the position of its uid in ``order`` (one entry per prompt)."""
    index = {u: i for i, u in enumerate(order)}
    return np.array([index[u] for u in uids], dtype=np.int64)


def sequence_scores(batch: DataProto) -> np.ndarray:
    """0/1 outcome per row: the reward sits on the last response token (verl's layout, BatchReward)."""
    return batch.batch["rm_scores"].sum(-1).double().cpu().numpy()


class DarsRayTrainer(RayPPOTrainer):
    """``RayPPOTrainer`` with the DARS step. ``config.dars`` carries the DARS settings and the run
    directory; everything else is verl's own config, translated by :mod:`dars.backends.verl.translate`."""

    # ------------------------------------------------------------------ rollout
    @property
    def reward(self) -> BatchReward:
        """The run's batch scorer (its worker pool lives as long as the trainer)."""
        if getattr(self, "_reward", None) is None:
            r = self.config.dars.reward
            self._reward = BatchReward(self.tokenizer, r.version, r.timeout_s, r.num_workers)
        return self._reward

    def _generate(self, gen_batch: DataProto) -> DataProto:
        """One ``generate_sequences`` call, padded to the agent-loop worker count (verl chunks the
        batch evenly over its workers) and unpadded again."""
        divisor = self.config.actor_rollout_ref.rollout.agent.num_workers
        padded, pad = pad_dataproto_to_divisor(gen_batch, divisor)
        out = self.async_rollout_manager.generate_sequences(padded)
        out.meta_info.pop("timing", None)  # per-call timings would make the stages' meta_info clash
        return unpad_dataproto(out, pad_size=pad)

    def dars_rollout(self, batch: DataProto) -> tuple[DataProto | None, dict]:
        """Both rollout stages for one batch of prompts (each with its ``uid``), then merge and filter.

        Returns the kept rows (stage 1 then stage 2; a prompt's rollouts share its uid) or None when
        the filter left nothing, and the step's DARS metrics (run-format keys)."""
        d = self.config.dars
        n = self.config.actor_rollout_ref.rollout.n
        prompt_uids = list(batch.non_tensor_batch["uid"])
        gen_batch = self._get_gen_batch(batch)  # moves the prompt fields out of `batch`
        gen_batch.meta_info["global_steps"] = self.global_steps

        def sample(stage: int, counts: np.ndarray) -> DataProto:
            # a prompt's rollouts keep its uid; stage 2 samples the same snapshot with the same parameters
            if stage == 1:
                return batch.repeat(repeat_times=n, interleave=True).union(
                    self._generate(gen_batch.repeat(repeat_times=n, interleave=True))
                )
            return batch.sample_level_repeat(counts).union(self._generate(gen_batch.sample_level_repeat(counts)))

        def score(rows: DataProto) -> tuple[np.ndarray, np.ndarray]:
            # one batch call per stage (dars.backends.verl.reward); writes rm_scores into the rows
            return uid_groups(rows.non_tensor_batch["uid"], prompt_uids), self.reward(rows)

        two = step.two_stage_rollout(sample, score, len(prompt_uids), n, d)
        # every generation of the step is done: free the rollout engine's memory for training
        self.checkpoint_manager.sleep_replicas()

        merged = DataProto.concat([two.stage1, two.stage2]) if two.stage2 is not None else two.stage1
        if "response_mask" not in merged.batch:
            merged.batch["response_mask"] = compute_response_mask(merged)
        lengths = merged.batch["response_mask"].sum(-1).cpu().numpy()
        budget = merged.batch["responses"].shape[-1]  # verl pads responses to the budget, response_length
        metrics = step.to_keys(step.rollout_fields(two, lengths, budget))
        if not two.stats.keep.any():
            return None, metrics
        if not two.stats.keep.all():
            merged = merged.select_idxs(two.stats.keep[two.group])
        return merged, metrics

    # ------------------------------------------------------------------ update batch
    @staticmethod
    def pad_for_update(batch: DataProto, divisor: int) -> tuple[DataProto, int]:
        """Append copies of leading rows until ``len(batch) % divisor == 0``. They carry a zero
        response mask and score and a uid of their own (a group of one: advantage 0), so they add
        nothing to the loss, its normaliser or the metrics (official DARS: the ``padding_item`` rows)."""
        pad = (-len(batch)) % divisor
        if pad == 0:
            return batch, 0
        filler = batch.select_idxs(np.arange(pad) % len(batch))
        filler.batch["response_mask"] = torch.zeros_like(filler.batch["response_mask"])
        filler.batch["rm_scores"] = torch.zeros_like(filler.batch["rm_scores"])
        filler.non_tensor_batch["uid"] = np.array([f"{PAD_UID}-{i}" for i in range(pad)], dtype=object)
        return DataProto.concat([batch, filler]), pad

    def set_advantages(self, batch: DataProto) -> None:
        """GRPO outcome advantage from dars.algorithm over the merged groups (of any size),
        broadcast over response tokens; padding rows are singleton groups, so theirs is 0."""
        uids = batch.non_tensor_batch["uid"]
        group = uid_groups(uids, list(dict.fromkeys(uids)))
        scores = sequence_scores(batch)
        adv = algo.group_advantages(group, scores, self.config.dars.use_std)
        mask = batch.batch["response_mask"].float()
        adv_tokens = torch.as_tensor(adv, dtype=torch.float32)[:, None] * mask
        batch.batch["token_level_scores"] = batch.batch["rm_scores"]
        batch.batch["token_level_rewards"] = batch.batch["rm_scores"]
        batch.batch["advantages"] = adv_tokens
        batch.batch["returns"] = adv_tokens

    def _update_actor(self, batch: DataProto) -> DataProto:
        """Mini-batch mode is verl's own (fixed-size batches). Full-batch mode: one optimiser step per
        epoch over every row (the padded length divides the DP size); the seq-mean normaliser is the
        number of *real* rows, so padding changes nothing."""
        if self.config.dars.update_mode != "full_batch":
            return super()._update_actor(batch)
        actor = self.config.actor_rollout_ref.actor
        batch.meta_info["multi_turn"] = self.config.actor_rollout_ref.rollout.multi_turn.enable
        batch.meta_info["temperature"] = self.config.actor_rollout_ref.rollout.temperature
        batch_td = left_right_2_no_padding(batch.to_tensordict())
        tu.assign_non_tensor(
            batch_td,
            calculate_entropy=actor.calculate_entropy or actor.entropy_coeff != 0.0,
            distillation_use_topk=False,
            distillation_only=False,
            global_batch_size=int(batch.meta_info["dars_real_rows"]),
            mini_batch_size=len(batch),
            epochs=actor.ppo_epochs,
            seed=actor.data_loader_seed,
            dataloader_kwargs={"shuffle": actor.shuffle},
            compute_loss=True,
        )
        output = tu.get(self.actor_rollout_wg.update_actor(batch_td), "metrics")
        output = rename_dict(output, "actor/")
        if "actor/mfu" in output:
            output["perf/mfu/actor"] = output.pop("actor/mfu")
        return DataProto.from_single_dict(data={}, meta_info={"metrics": output})

    # ------------------------------------------------------------------ one training step
    def train_step(self, batch_dict: dict, epoch: int) -> tuple[dict | None, dict]:
        """One dataloader batch -> (run-format record or None when skipped, verl metrics)."""
        t_step = time.perf_counter()
        batch = DataProto.from_single_dict(batch_dict)
        batch.meta_info["temperature"] = self.config.actor_rollout_ref.rollout.temperature
        batch.non_tensor_batch["uid"] = np.array([str(uuid.uuid4()) for _ in range(len(batch))], dtype=object)
        self._samples_seen += len(batch)

        merged, record = self.dars_rollout(batch)
        if merged is None:
            # nothing to learn from: wake the rollout replicas again, same weights, same step
            self.checkpoint_manager.update_weights(self.global_steps)
            return None, {}
        t0 = time.perf_counter()
        real_rows = len(merged)
        real_tokens = int(merged.batch["attention_mask"].sum())
        batch, _ = self.pad_for_update(merged, self._dp_size())
        batch.meta_info["dars_real_rows"] = real_rows
        verl_metrics: dict = {}
        if self.config.trainer.balance_batch:
            self._balance_batch(batch, metrics=verl_metrics)
        batch.meta_info["global_token_num"] = torch.sum(batch.batch["attention_mask"], dim=-1).tolist()

        old_log_prob, _ = self._compute_old_log_prob(batch)
        entropy = old_log_prob.batch.pop("entropys")
        mask = batch.batch["response_mask"].float()
        token_mean, seq_mean = entropy_means((entropy * mask).sum(-1).tolist(), mask.sum(-1).tolist())
        batch = batch.union(old_log_prob)
        if self.use_reference_policy:
            batch = batch.union(self._compute_ref_log_prob(batch))
        self.set_advantages(batch)

        self.global_steps += 1  # the step being trained (verl names checkpoints after it)
        actor_metrics = reduce_metrics(self._update_actor(batch).meta_info["metrics"])
        self.checkpoint_manager.update_weights(self.global_steps)
        t_update = time.perf_counter() - t0

        epochs = self.config.actor_rollout_ref.actor.ppo_epochs
        trained_tokens = real_tokens * epochs
        if self.config.dars.update_mode == "full_batch":
            optim_steps = epochs
        else:
            optim_steps = epochs * -(-record["prompts"] // self.config.actor_rollout_ref.actor.ppo_mini_batch_size)
        self._optim_total += optim_steps
        record = step.StepRecord(
            step=self.global_steps,
            epoch=epoch,
            **step.from_keys(record),
            tokens_trained=trained_tokens,
            entropy_token_mean=token_mean,
            entropy_seq_mean=seq_mean,
            loss_pg=actor_metrics.get("actor/pg_loss"),
            loss_clipfrac=actor_metrics.get("actor/pg_clipfrac"),
            loss_kl=actor_metrics.get("actor/kl_loss"),
            grad_norm=actor_metrics.get("actor/grad_norm"),
            optim_steps=optim_steps,
            optim_skipped=0,
            optim_total=self._optim_total,  # verl reports no skips
            lr=actor_metrics.get("actor/lr", self.config.actor_rollout_ref.actor.optim.lr),
            samples_seen=self._samples_seen,
            time_update=t_update,
            time_step=time.perf_counter() - t_step,
        ).to_json()
        return record, {**verl_metrics, **actor_metrics}

    def _dp_size(self) -> int:
        return self._get_dp_size(self.actor_rollout_wg, "actor")

    def _should_save(self) -> bool:
        freq = self.config.trainer.save_freq
        return freq > 0 and (self.global_steps % freq == 0 or self.global_steps >= self.total_training_steps)

    # ------------------------------------------------------------------ validation
    def _validate(self, merged: bool = False) -> dict:
        """n_val samples per validation problem; writes eval/step_<k>.jsonl and eval/summary.jsonl
        exactly as the embedded backend does (per-sample 0/1 scores, unbiased Pass@k offline)."""
        val = self.config.actor_rollout_ref.rollout.val_kwargs
        records: list[dict] = []
        for test_data in self.val_dataloader:
            batch = DataProto.from_single_dict(test_data)
            problems = self._problem_records(batch)
            batch.non_tensor_batch["uid"] = np.array([p["id"] for p in problems], dtype=object)
            batch = batch.repeat(repeat_times=val.n, interleave=True)
            gen_batch = self._get_gen_batch(batch)
            gen_batch.meta_info = {
                "eos_token_id": self.tokenizer.eos_token_id,
                "pad_token_id": self.tokenizer.pad_token_id,
                "recompute_log_prob": False,
                "do_sample": val.do_sample,
                "validate": True,
                "global_steps": self.global_steps,
            }
            out = batch.union(self._generate(gen_batch))  # the rows with their gold answers
            scores = self.reward(out).astype(int)
            lengths = compute_response_mask(out).sum(-1).tolist()
            preds = out.non_tensor_batch.get("pred")
            texts = None
            if self.config.dars.save_responses:
                texts = self.tokenizer.batch_decode(out.batch["responses"], skip_special_tokens=True)
            for j, p in enumerate(problems):
                rows = range(j * val.n, (j + 1) * val.n)  # repeat(interleave=True) keeps prompt order
                p["scores"] = [int(scores[i]) for i in rows]
                p["response_lengths"] = [int(lengths[i]) for i in rows]
                p["preds"] = [str(preds[i]) if preds is not None else "" for i in rows]
                if texts is not None:
                    p["responses"] = [texts[i] for i in rows]
            records += problems
        summary = summarize(records, val.n, self.config.dars.max_k)
        self.runlog.log_eval(
            self.global_steps,
            records,
            {
                "step": self.global_steps,
                "n_val": val.n,
                "temperature": val.temperature,
                "top_p": val.top_p,
                "max_response_length": self.config.data.max_response_length,
                **summary,
            },
        )
        return summary

    def _problem_records(self, batch: DataProto) -> list[dict]:
        nt = batch.non_tensor_batch
        out = []
        for i in range(len(batch)):
            extra = nt["extra_info"][i] if "extra_info" in nt else {}
            extra = extra if isinstance(extra, dict) else {}
            source = str(nt["data_source"][i])
            out.append(
                {
                    "data_source": source,
                    "id": str(extra.get("id", f"{source}-{extra.get('index', i)}")),
                    "prompt": "".join(m.get("content", "") for m in nt["raw_prompt"][i]) if "raw_prompt" in nt else "",
                    "answer": str(nt["reward_model"][i]["ground_truth"]),
                }
            )
        return out

    # ------------------------------------------------------------------ the loop
    def fit(self):
        from tqdm import tqdm
        from verl.utils.tracking import Tracking

        cfg = self.config
        tracker = Tracking(
            project_name=cfg.trainer.project_name,
            experiment_name=cfg.trainer.experiment_name,
            default_backend=cfg.trainer.logger,
            config=OmegaConf.to_container(cfg, resolve=True),
        )
        self.global_steps = 0
        self._load_checkpoint()  # sets global_steps and the dataloader position when resuming
        self.checkpoint_manager.update_weights(self.global_steps)
        self.runlog = RunLog(Path(cfg.dars.run_dir))
        self.runlog.truncate_after(self.global_steps)  # a resumed run recomputes what came after
        done = read_jsonl(self.runlog.metrics_path)
        last = step.from_keys(done[-1]) if done else {}
        self._samples_seen, self._optim_total = last.get("samples_seen", 0), last.get("optim_total", 0)

        evaluated = {s["step"] for s in self.runlog.eval_summaries()}
        due = (self.global_steps == 0 and cfg.trainer.val_before_train) or (
            self.global_steps > 0 and cfg.trainer.test_freq > 0 and self.global_steps % cfg.trainer.test_freq == 0
        )
        if due and self.global_steps not in evaluated:  # also a validation a kill cut off after its checkpoint
            tracker.log(data=self._validate(), step=self.global_steps)

        total = self.total_training_steps
        bar = tqdm(total=total, initial=self.global_steps, desc=cfg.trainer.experiment_name, unit="step")
        first_epoch = self.global_steps // max(len(self.train_dataloader), 1)
        for epoch in range(first_epoch, cfg.trainer.total_epochs):
            for batch_dict in self.train_dataloader:
                record, verl_metrics = self.train_step(batch_dict, epoch)
                if record is None:
                    log.info("step %d: every group was all-correct or all-wrong; batch skipped", self.global_steps + 1)
                    continue
                self.runlog.log_step(record)
                self.runlog.set_status("running", step=self.global_steps)  # for `python -m dars.sweep_status`
                last = self.global_steps >= total
                if cfg.trainer.test_freq > 0 and (last or self.global_steps % cfg.trainer.test_freq == 0):
                    verl_metrics.update(self._validate())
                if self._should_save():  # after the step's record and validation: a checkpoint at step k
                    self._save_checkpoint()  # implies both are on disk, so a resume never loses a record
                tracker.log(
                    data={**{f"dars/{k}": v for k, v in record.items() if v is not None}, **verl_metrics},
                    step=self.global_steps,
                )
                bar.update(1)
                if last:
                    bar.close()
                    return
        bar.close()


class DarsTaskRunner(BaseTaskRunner):
    """verl's task runner with our trainer (the stock ``TaskRunner.run`` hard-codes RayPPOTrainer)."""

    def run(self, config):
        from verl.trainer.ppo.utils import create_rl_dataset, create_rl_sampler, need_critic, need_reference_policy
        from verl.utils.config import omega_conf_to_dataclass, validate_config
        from verl.utils.dataset.rl_dataset import collate_fn

        OmegaConf.resolve(config)
        _, worker_group_cls = self.add_actor_rollout_worker(config)
        self.add_reward_model_resource_pool(config)
        validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
        model_config = omega_conf_to_dataclass(config.actor_rollout_ref.model)
        tokenizer, processor = model_config.tokenizer, model_config.processor
        datasets = [
            create_rl_dataset(config.data[key], config.data, tokenizer, processor, is_train=key == "train_files")
            for key in ("train_files", "val_files")
        ]
        trainer = DarsRayTrainer(
            config=config,
            tokenizer=tokenizer,
            processor=processor,
            role_worker_mapping=self.role_worker_mapping,
            resource_pool_manager=self.init_resource_pool_mgr(config),
            ray_worker_group_cls=worker_group_cls,
            train_dataset=datasets[0],
            val_dataset=datasets[1],
            collate_fn=collate_fn,
            train_sampler=create_rl_sampler(config.data, datasets[0]),
        )
        trainer.init_workers()
        trainer.fit()


def main() -> None:
    import hydra

    @hydra.main(config_path="conf", config_name="dars_ppo", version_base=None)  # (next to this file)
    def _main(config):
        from verl.trainer.main_ppo import run_ppo
        from verl.trainer.ppo.utils import need_critic, need_reference_policy
        from verl.utils.config import validate_config
        from verl.utils.device import auto_set_device

        auto_set_device(config)
        validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
        run_ppo(config, task_runner_class=ray.remote(num_cpus=1)(DarsTaskRunner))

    _main()


if __name__ == "__main__":
    main()
