"""Policy models: a real Hugging Face checkpoint, or one built from a config.

Everything goes through ``AutoModelForCausalLM`` / ``AutoTokenizer``, so the tiny embedded model
and a local Qwen2.5-Math checkpoint take the same code path. The tiny model is a Qwen2-shaped
network with a character-level tokenizer saved as a normal tokenizer directory; its "base model"
is a short supervised warm start on the synthetic task (so accuracy is spread across levels, as a
pre-trained base would be), built once and cached by a hash of everything that determines it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

try:  # transformers prints a bar per shard save/load; ours already says what happens
    from transformers.utils import logging as _hf_logging

    _hf_logging.disable_progress_bar()
except ImportError:  # pragma: no cover
    pass

# Bump when the warm-start recipe changes in a way the config hash cannot see.
BASE_MODEL_RECIPE_VERSION = 2  # 2: corpus from the training side of the val pool, level mix, worked/direct habits
SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>"]
MULTI_CHAR_TOKENS = ["\\boxed{"]  # one token, so boxed answers cost a single step
SHIPPED_BASE = Path(__file__).parent / "assets" / "tiny_base"  # the default recipe's base model, built once


def build_char_tokenizer():
    """Character-level tokenizer over printable ASCII (+ newline and ``\\boxed{``)."""
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + MULTI_CHAR_TOKENS + chars)}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\\boxed\{|[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def qwen2_from_config(build: DictConfig, tokenizer):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=build.hidden_size,
        num_hidden_layers=build.num_layers,
        num_attention_heads=build.num_heads,
        num_key_value_heads=build.num_kv_heads,
        intermediate_size=build.intermediate_size,
        max_position_embeddings=build.max_position_embeddings,
        tie_word_embeddings=build.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return Qwen2ForCausalLM(cfg)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def compute_dtype(name: str, device: torch.device) -> torch.dtype:
    """Parameters stay fp32 (the master copy); this is the autocast dtype for forward passes."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


@contextmanager
def autocast(device: torch.device, dtype: torch.dtype):
    ctx = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    with ctx:
        yield


def load_policy(cfg: DictConfig, cache_dir: str | Path, seed: int):
    """Returns (model, tokenizer, source) where source says where the weights came from."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    m = cfg.model
    if m.path:
        path = Path(m.path).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"model.path={m.path} is not a local directory. Point it at a Hugging Face checkpoint "
                f"on disk (config.json + weights + tokenizer), or use model=tiny."
            )
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        return model, tok, str(path)
    if m.warm_start.steps > 0:
        path = shipped_base_model(cfg) or ensure_base_model(cfg, cache_dir)
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        return model, tok, str(path)
    # Random weights from the config (e.g. a 1.5B-shaped model for throughput checks).
    torch.manual_seed(seed)
    tok = build_char_tokenizer()
    return qwen2_from_config(m.build, tok), tok, "random-init"


def base_model_key(cfg: DictConfig) -> str:
    warm = OmegaConf.to_container(cfg.model.warm_start, resolve=True)
    warm.pop("use_shipped", None)  # where the weights come from, not what they are
    # the corpus sees only the levels it trains on, and a weight of 1 is the default: a mix that
    # lists them (or not) is the same corpus, hence the same model and key
    warm["mix"] = {
        lv: float(w) for lv, w in sorted((warm.get("mix") or {}).items()) if lv in cfg.data.levels and float(w) != 1.0
    }
    spec = {
        "recipe": BASE_MODEL_RECIPE_VERSION,
        "build": OmegaConf.to_container(cfg.model.build, resolve=True),
        "warm_start": warm,
        "levels": sorted(cfg.data.levels),  # the corpus ignores their order (dars.data.synthetic.sft_examples)
        "prompt_template": cfg.data.prompt_template,
        "val_pool": cfg.data.val_pool,  # decides which questions the corpus may hold
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def shipped_base_model(cfg: DictConfig) -> Path | None:
    """The base model that ships with dars (``dars/assets/tiny_base``), when it was built from
    exactly this recipe and ``model.warm_start.use_shipped`` is on; otherwise None (build it here).

    Why ship weights at all: the warm start is chaotic in float rounding, so the same recipe built
    on another CPU type (or with another thread count) lands on a measurably different base
    (docs/sandbox.md: add3 from 9 % to 61 %). Shipping one build makes every machine start RL from
    the same base model, as every user of a real checkpoint does."""
    meta = SHIPPED_BASE / "recipe.json"
    if not cfg.model.warm_start.get("use_shipped", True) or not meta.is_file():
        return None
    return SHIPPED_BASE if json.loads(meta.read_text())["key"] == base_model_key(cfg) else None


def ship_base_model(cfg: DictConfig, cache_dir: str | Path, dest: Path = SHIPPED_BASE) -> Path:
    """Make this machine's build of cfg's recipe (built now, or from the cache) the shipped base,
    with its recipe key and what built it (``python -m dars.model ship``; docs/sandbox.md first)."""
    import platform

    src = ensure_base_model(cfg, cache_dir)
    info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), platform.processor())
    meta = {
        "key": base_model_key(cfg),
        "warm_start": OmegaConf.to_container(cfg.model.warm_start, resolve=True),
        "levels": list(cfg.data.levels),
        "built_with": {"torch": torch.__version__, "cpu": cpu},
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".shipping-", dir=dest.parent))
    try:
        for f in src.iterdir():
            shutil.copy2(f, tmp / f.name)
        (tmp / "recipe.json").write_text(json.dumps(meta, indent=1) + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def ensure_base_model(cfg: DictConfig, cache_dir: str | Path) -> Path:
    """The warm-started tiny base model, built on first use and cached by content hash.

    Built into a temporary directory and renamed into place, so a killed build or two jobs
    building at once never leave a half-written model behind."""
    final = Path(cache_dir).expanduser() / "base_models" / base_model_key(cfg)
    if (final / "config.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=final.parent))
    try:
        log.info("building the tiny base model (supervised warm start) into %s", final)
        model, tok = warm_start(cfg)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first: use theirs
            if not (final / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def warm_start(cfg: DictConfig):
    """Supervised training on a synthetic corpus of (prompt, \\boxed{answer}) pairs (loss on the
    completion tokens): the tiny stand-in for pre-training. docs/sandbox.md says why each setting."""
    from tqdm.auto import tqdm

    from dars.data.synthetic import sft_examples

    ws, m = cfg.model.warm_start, cfg.model
    torch.manual_seed(ws.seed)
    tok = build_char_tokenizer()
    model = qwen2_from_config(m.build, tok)
    device = resolve_device(m.device)
    model.to(device)
    mix = OmegaConf.to_container(ws.mix, resolve=True) if ws.get("mix") else None
    examples = sft_examples(
        list(cfg.data.levels),
        ws.steps * ws.batch_size,
        ws.seed,
        cfg.data.prompt_template,
        mix=mix,
        worked_share=ws.worked_share,
        val_pool=cfg.data.val_pool,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=ws.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=ws.lr, total_steps=ws.steps, pct_start=0.1)
    model.train()
    t0 = time.time()
    bar = tqdm(range(ws.steps), desc="warm start (tiny base model)", unit="step", dynamic_ncols=True)
    for step in bar:
        chunk = examples[step * ws.batch_size : (step + 1) * ws.batch_size]
        ids, labels = [], []
        for prompt, completion in chunk:
            p = [tok.bos_token_id] + tok(prompt, add_special_tokens=False).input_ids
            c = tok(completion, add_special_tokens=False).input_ids + [tok.eos_token_id]
            ids.append(p + c)
            labels.append([-100] * len(p) + c)
        width = max(len(x) for x in ids)
        input_ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x in ids], device=device)
        label_t = torch.tensor([y + [-100] * (width - len(y)) for y in labels], device=device)
        loss = model(input_ids=input_ids, attention_mask=(input_ids != tok.pad_token_id).long(), labels=label_t).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    log.info("warm start done in %.1fs (final loss %.3f)", time.time() - t0, loss.item())
    model.to("cpu")
    return model, tok


if __name__ == "__main__":  # python -m dars.model ship [overrides...]: rebuild the shipped base model
    import sys

    from hydra import compose, initialize_config_dir

    if sys.argv[1:2] != ["ship"]:
        sys.exit("usage: python -m dars.model ship [hydra overrides]   (rebuilds dars/assets/tiny_base)")
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    with initialize_config_dir(config_dir=str(Path(__file__).parents[1] / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=sys.argv[2:])
    print(ship_base_model(cfg, cfg.paths.cache_dir))
