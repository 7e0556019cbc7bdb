"""The four pretraining stages (paper §3.2-3.3) and the run folder they share.

``OUT/`` holds ``config.yaml`` (the resolved config), ``run.json`` (manifest fingerprint),
``init/`` (the model initialised from the parent, our checkpoint format) and one folder per stage:

- ``frame_targets/``: ``centroids.npy`` (K x d), ``labels.npy`` + ``offsets.npy`` (a label per 20 ms frame);
- ``utt_simclr/``: ``checkpoints/step_N.pt``, ``metrics.jsonl``;
- ``utt_targets/``: ``embeddings.npy``, ``kmeans_Q*.npz``, ``knee.png``, ``labels.npy``;
- ``joint/``: ``checkpoints/step_N.pt``, ``metrics.jsonl``;
- ``tensorboard/<stage>/``.

Each stage writes ``done.json`` last and is skipped when it exists; interrupted work resumes
(k-means results and label chunks are reused, training continues from its latest checkpoint with
``--resume``).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from learn2diss.club import GaussianCLUBNetwork
from learn2diss.data.batching import (
    Batch,
    SecondsBatchSampler,
    UtteranceDataset,
    collate,
    frames_for_samples,
)
from learn2diss.data.manifest import Manifest
from learn2diss.errors import Learn2DissError
from learn2diss.io import (
    load_npy,
    load_npz,
    read_json,
    read_yaml,
    remove_temporaries,
    save_npy,
    save_npz,
    write_json,
    write_yaml,
)
from learn2diss.kmeans import assign, fit_kmeans
from learn2diss.pretrain.config import Config, JointConfig, config_to_dict
from learn2diss.pretrain.extract import chunk_lengths, iterate_batches, map_utterances, read_chunks
from learn2diss.pretrain.objectives import JointObjective, SimCLRObjective
from learn2diss.pretrain.targets import FrameLabels, knee_point, mfcc_features, plot_knee
from learn2diss.schema import to_dict
from learn2diss.training.checkpoint import load_checkpoint
from learn2diss.training.ddp import DistributedContext, barrier
from learn2diss.training.loop import TrainingStage, make_adam, train
from learn2diss.training.precision import autocast
from learn2diss.upstream.checkpoints import import_parent, load_model, save_model
from learn2diss.upstream.config import ModelConfig
from learn2diss.upstream.formats import current_names
from learn2diss.upstream.model import SAMPLE_RATE, Learn2Diss

__all__ = ["STAGES", "Run", "prepare_run", "run_stage", "joint_model_config", "joint_stage", "layer_features",
           "StageError", "stage_checkpoint"]

STAGES = ("frame-targets", "utt-simclr", "utt-targets", "joint")
_NEEDS = {"utt-simclr": (), "frame-targets": (), "utt-targets": ("utt-simclr",),
          "joint": ("frame-targets", "utt-simclr", "utt-targets")}


class StageError(Learn2DissError, RuntimeError):
    """A stage cannot run: a prerequisite is missing or the run folder does not match the config."""


def stage_dir(stage: str) -> str:
    """The folder of ``stage`` inside a run folder (``utt-simclr`` -> ``utt_simclr``)."""
    return stage.replace("-", "_")


def stage_checkpoint(out: Path, stage: str, done: dict) -> Path:
    """The checkpoint that a finished stage recorded in its ``done.json``, inside the run folder ``out``.

    Only its file name is used, in this run's ``<stage>/checkpoints/``: a moved run works from any directory, a
    copied run reads its own files, and a ``done.json`` cannot point outside the run folder.
    """
    path = out / stage_dir(stage) / "checkpoints" / Path(str(done["checkpoint"])).name
    if not path.is_file():
        raise StageError(f"{out / stage_dir(stage) / 'done.json'}: its checkpoint {path} is missing")
    return path


@dataclass
class Run:
    """A run folder with its config, manifest and process group."""

    out: Path
    config: Config
    manifest: Manifest
    ctx: DistributedContext
    resume: bool

    def dir(self, stage: str) -> Path:
        path = self.out / stage_dir(stage)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def done(self, stage: str) -> dict | None:
        path = self.out / stage_dir(stage) / "done.json"
        return read_json(path) if path.is_file() else None

    def finished(self, stage: str) -> dict:
        """The ``done.json`` of a stage this one needs; an error naming the stage when it has not finished."""
        done = self.done(stage)
        if done is None:
            raise StageError(f"{self.out}: stage {stage} has not finished; run it first")
        return done

    def checkpoint(self, stage: str) -> Path:
        """The final checkpoint of a finished training stage, resolved inside this run folder."""
        return stage_checkpoint(self.out, stage, self.finished(stage))

    def mark_done(self, stage: str, info: dict) -> None:
        """Write ``done.json``; a checkpoint path in ``info`` is stored relative to the run folder."""
        if "checkpoint" in info:
            info = {**info, "checkpoint": Path(info["checkpoint"]).relative_to(self.out).as_posix()}
        if self.ctx.is_main:
            write_json(self.dir(stage) / "done.json", info)
        barrier(self.ctx)

    @property
    def segment_frames(self) -> int:
        return round(self.config.data.segment_seconds * SAMPLE_RATE / self.config.model.parent.stride)

    def autocast(self) -> torch.autocast:
        return autocast(self.ctx.device, self.config.train.precision)

    def log(self, message: str) -> None:
        if self.ctx.is_main:
            print(message, flush=True)


def _model_diff(a: dict, b: dict, prefix: str = "model") -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += _model_diff(a[k], b[k], f"{prefix}.{k}")
        elif a.get(k) != b.get(k):
            out.append(f"{prefix}.{k}: {a.get(k)!r} -> {b.get(k)!r}")
    return out


def prepare_run(
    out: Path, config: Config, manifest: Manifest, ctx: DistributedContext, parent: Path | None,
    random_parent: bool, resume: bool,
) -> Run:
    """Create or check ``out``: config.yaml, run.json and the initial model ``init/``."""
    run = Run(Path(out), config, manifest, ctx, resume)
    config_path, run_path = run.out / "config.yaml", run.out / "run.json"
    current = config_to_dict(config)
    if config_path.is_file():
        stored = read_yaml(config_path, "run config")
        diffs = _model_diff(stored.get("model") or {}, current["model"])
        if diffs:
            raise StageError(f"{config_path}: the model differs from this run's config ({'; '.join(diffs)}); "
                             "use another --out")
        changed = [k for k in current if k != "model" and stored.get(k) != current[k]]
        if changed:
            run.log(f"note: config sections {changed} differ from {config_path}; the new values apply from here on")
    if run_path.is_file():
        info = read_json(run_path)
        if info["manifest_fingerprint"] != manifest.fingerprint():
            raise StageError(f"{run_path}: the run was made with manifest {info['manifest']} "
                             f"({info['manifest_utterances']} utterances); {manifest.source} differs. "
                             "Labels are stored per manifest row: use the same manifest or another --out")
    if not (run.out / "init").is_dir() and parent is None and not random_parent:
        raise StageError("pass --parent PARENT_CKPT (a HuBERT/WavLM base checkpoint: fairseq .pt or "
                         "Hugging Face folder), or --random-parent for a randomly initialised parent")
    if ctx.is_main:
        remove_temporaries(run.out)  # left by a writer that was killed
        model = None
        if not (run.out / "init").is_dir():  # imported before anything is written: a refused parent leaves no run
            torch.manual_seed(config.train.seed)
            model = Learn2Diss(config.model)
            if parent is not None:
                import_parent(model, parent)
        elif parent is not None:
            run.log(f"note: {run.out / 'init'} exists; --parent {parent} is not imported again")
        write_yaml(config_path, current)
        write_json(run_path, {"manifest": manifest.source, "manifest_utterances": len(manifest),
                               "manifest_fingerprint": manifest.fingerprint()})
        if model is not None:
            save_model(model, run.out / "init", extra={"parent": str(parent) if parent else "random"})
    barrier(ctx)
    return run


def run_stage(run: Run, stage: str) -> None:
    """Run ``stage`` unless it is done; its prerequisites must be done."""
    if run.done(stage) is not None:
        run.log(f"[{stage}] done already ({run.out / stage_dir(stage) / 'done.json'}), skipped")
        return
    missing = [s for s in _NEEDS[stage] if run.done(s) is None]
    if missing:
        raise StageError(f"stage {stage} needs {', '.join(missing)} first: run `learn2diss pretrain {missing[0]} ...` "
                         "(or `learn2diss pretrain` for all stages in order)")
    {"frame-targets": frame_targets, "utt-simclr": utt_simclr, "utt-targets": utt_targets, "joint": joint}[stage](run)


def _init_model(run: Run) -> Learn2Diss:
    torch.manual_seed(run.config.train.seed)
    return load_model(run.out / "init").to(run.ctx.device)


def layer_features(model: Learn2Diss, wav: Tensor, lengths: Tensor, layer: int) -> tuple[Tensor, Tensor]:
    """frame_hidden_states[layer] of the inference path (0 = input of layer 1), and the frame lengths."""
    features = model.extract(wav, lengths)
    if layer < len(features.hidden_states):  # a frozen layer: no need to run g
        return features.hidden_states[layer], features.lengths
    return model.frame_hidden_states(features)[layer], features.lengths


def _target_features(model: Learn2Diss, wav: Tensor, lengths: Tensor, layer: int | str) -> tuple[Tensor, Tensor]:
    """What stage a clusters: a parent layer, or (``layer: mfcc``, HuBERT iteration 1) MFCC + deltas."""
    if isinstance(layer, int):
        return layer_features(model, wav, lengths, layer)
    n = torch.as_tensor(frames_for_samples(lengths.cpu().numpy(), model.config.parent.conv_layers))
    shift_ms = 1000 * model.config.parent.stride / SAMPLE_RATE  # one MFCC frame per model frame
    feats = [mfcc_features(wav[b, : int(lengths[b])], int(n[b]), shift_ms) for b in range(len(lengths))]
    return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), n


def frame_targets(run: Run) -> None:
    """Stage a: k-means (K = model.frame.num_targets) of the parent's layer ``frame_targets.layer`` (or of MFCCs)."""
    cfg, work = run.config.frame_targets, run.dir("frame-targets")
    k = run.config.model.frame.num_targets
    model = _init_model(run).eval()
    batch_samples = int(cfg.batch_seconds * SAMPLE_RATE)
    longest = int(run.manifest.samples.max())
    centroids_path = work / "centroids.npy"
    if run.ctx.is_main and not centroids_path.is_file():
        rng = np.random.default_rng(cfg.seed)
        order = rng.permutation(len(run.manifest))
        frames = frames_for_samples(run.manifest.samples[order], run.config.model.parent.conv_layers)
        take = order[: int(np.searchsorted(np.cumsum(frames), cfg.fit_max_frames)) + 1]
        chunks = []
        with torch.no_grad(), run.autocast():
            for _, wav, lengths in iterate_batches(run.manifest, take, batch_samples, longest,
                                                   run.config.data.num_workers, run.ctx.device):
                h, n = _target_features(model, wav, lengths, cfg.layer)
                chunks += [h[b, : int(n[b])].float().cpu().numpy() for b in range(h.shape[0])]
        x = np.concatenate(chunks)
        if len(x) > cfg.fit_max_frames:
            x = x[rng.choice(len(x), cfg.fit_max_frames, replace=False)]
        run.log(f"[frame-targets] k-means K={k} on {len(x)} frames of layer {cfg.layer} ({x.shape[1]}-d)")
        fitted, inertia = fit_kmeans(x, k, cfg.kmeans_iterations, cfg.seed)
        save_npy(centroids_path, fitted)
        write_json(work / "kmeans.json", {"frames": len(x), "inertia": inertia})
    barrier(run.ctx)
    centroids = torch.from_numpy(_array(centroids_path, 2, "f")).to(run.ctx.device)

    @torch.no_grad()
    def label(wav: Tensor, lengths: Tensor) -> list[np.ndarray]:
        with run.autocast():
            h, n = _target_features(model, wav, lengths, cfg.layer)
        labels = assign(h.flatten(0, 1), centroids).view(h.shape[:2]).cpu().numpy()
        return [labels[b, : int(n[b])] for b in range(len(labels))]

    num_chunks = map_utterances(run.manifest, label, work / "chunks", run.ctx, batch_samples, longest,
                                run.config.data.num_workers, desc="frame targets")
    if run.ctx.is_main:
        counts = chunk_lengths(work / "chunks", num_chunks)
        expected = frames_for_samples(run.manifest.samples, run.config.model.parent.conv_layers)
        bad = np.flatnonzero(counts != expected)
        if len(bad):
            raise StageError(f"frame labels of {run.manifest.paths[bad[0]]} have {counts[bad[0]]} frames, "
                             f"expected {expected[bad[0]]}")
        FrameLabels.write_chunks(work, work / "chunks", num_chunks, k)  # one chunk in memory at a time
        shutil.rmtree(work / "chunks")
        run.log(f"[frame-targets] {int(lengths.sum())} frame labels for {len(lengths)} utterances in {work}")
    run.mark_done("frame-targets", {"num_clusters": k, "layer": cfg.layer})


def _training_batches(
    run: Run, indices: np.ndarray, max_batch_seconds: float, frame_labels: FrameLabels | None,
    utt_labels: np.ndarray | None,
) -> Callable[[tuple[int, int]], Iterator[Batch]]:
    data, model_cfg = run.config.data, run.config.model
    dataset = UtteranceDataset(run.manifest.paths, run.manifest.samples, model_cfg.parent.conv_layers,
                               int(data.max_utterance_seconds * SAMPLE_RATE), data.seed, frame_labels, utt_labels)
    bucket = int(data.bucket_seconds * SAMPLE_RATE)
    collate_fn = partial(collate, conv_layers=model_cfg.parent.conv_layers, segment_frames=run.segment_frames,
                         seed=data.seed, bucket=bucket)
    if data.shards:  # WebDataset shards instead of one file per utterance (learn2diss.data.shards)
        from learn2diss.data.shards import shard_batches

        return shard_batches(data.shards, run.manifest, dataset, collate_fn, indices, int(max_batch_seconds * SAMPLE_RATE),
                             data.seed, run.ctx.rank, run.ctx.world_size, data.num_workers, data.shuffle_buffer,
                             run.ctx.device.type == "cuda")

    def factory(position: tuple[int, int]) -> Iterator[Batch]:
        sampler = SecondsBatchSampler(dataset.cropped_lengths(), indices, int(max_batch_seconds * SAMPLE_RATE),
                                      data.seed, run.ctx.rank, run.ctx.world_size, start=position, bucket=bucket)
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, collate_fn=collate_fn, num_workers=data.num_workers,
            pin_memory=run.ctx.device.type == "cuda", generator=torch.Generator(),
        )
        return iter(loader)

    return factory


def _usable(run: Run, min_samples: int, two_segments: bool) -> np.ndarray:
    """Manifest rows long enough to train on (and, for ``two_segments``, for two views after cropping)."""
    data, model = run.config.data, run.config.model
    shortest = max(int(data.min_utterance_seconds * SAMPLE_RATE), min_samples)
    cropped = np.minimum(run.manifest.samples, int(data.max_utterance_seconds * SAMPLE_RATE))
    keep = run.manifest.samples >= shortest
    short_h = keep & (frames_for_samples(cropped, model.parent.conv_layers) < 2 * run.segment_frames)
    if two_segments:
        keep &= ~short_h
    if not keep.any():
        raise StageError(f"no utterance of {run.manifest.source} is long enough for this stage "
                         f"(data.min_utterance_seconds, data.segment_seconds)")
    run.log(f"training on {int(keep.sum())} of {len(keep)} utterances; "
            f"{int((~keep).sum())} too short are left out"
            + ("" if two_segments else f", {int(short_h.sum())} shorter than 2 segments get no utterance-level loss"))
    return np.flatnonzero(keep)


def utt_simclr(run: Run) -> None:
    """Stage b: h alone with InfoNCE (eq. 5) on the segment pairs; f and g untouched."""
    cfg, work = run.config.utt_simclr, run.dir("utt-simclr")
    model = _init_model(run)
    for p in model.frame_parameters():
        p.requires_grad_(False)
    optimizer = make_adam(model.utterance_parameters(), cfg.optimizer)
    stage = TrainingStage(
        name="utt-simclr", model=model, objective=SimCLRObjective(model, cfg.infonce, run.segment_frames),
        optimizers={"utterance": (optimizer, cfg.optimizer)}, steps=cfg.steps, grad_accum=cfg.grad_accum,
    )
    batches = _training_batches(run, _usable(run, model.min_samples, two_segments=True), cfg.max_batch_seconds, None, None)
    final = train(stage, batches, work, run.out / "tensorboard" / "utt_simclr", run.config.train, run.ctx,
                  run.resume, {"config": config_to_dict(run.config)})
    run.mark_done("utt-simclr", {"checkpoint": str(final)})


def utt_targets(run: Run) -> None:
    """Stage c: pooled embeddings z^L -> k-means for each Q -> knee point -> utterance cluster labels."""
    cfg, work = run.config.utt_targets, run.dir("utt-targets")
    model = _init_model(run)
    model.load_state_dict(load_checkpoint(run.checkpoint("utt-simclr"))["model"])
    model.eval()

    @torch.no_grad()
    def embed(wav: Tensor, lengths: Tensor) -> list[np.ndarray]:
        with run.autocast():
            features = model.extract(wav, lengths)
            z = model.encode_utterance(features.x, features.lengths).embedding
        return list(z.float().cpu().numpy()[:, None, :])

    max_samples = int(cfg.max_utterance_seconds * SAMPLE_RATE)
    num_chunks = map_utterances(run.manifest, embed, work / "chunks", run.ctx, int(cfg.batch_seconds * SAMPLE_RATE),
                                max_samples, run.config.data.num_workers, desc="utterance embeddings")
    if run.ctx.is_main:
        emb = np.concatenate(read_chunks(work / "chunks", num_chunks)).astype(np.float32)
        if cfg.normalize:
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        save_npy(work / "embeddings.npy", emb)
        counts = list(cfg.cluster_counts)
        if counts[-1] > len(emb):
            raise StageError(f"utt_targets.cluster_counts goes up to Q = {counts[-1]} but the manifest has only "
                             f"{len(emb)} utterances")
        inertias = [_kmeans_cached(work, emb, q, cfg.kmeans_iterations, cfg.seed)[1] for q in counts]
        knee = knee_point(counts, inertias)
        chosen = knee if cfg.use_knee and knee is not None else run.config.model.utterance.num_targets
        if cfg.use_knee and knee is None:
            run.log(f"[utt-targets] no knee in the curve {dict(zip(counts, inertias, strict=True))}; "
                    f"using model.utterance.num_targets = {chosen}")
        centroids, _ = _kmeans_cached(work, emb, chosen, cfg.kmeans_iterations, cfg.seed)
        labels = assign(torch.from_numpy(emb), torch.from_numpy(centroids)).numpy()
        save_npy(work / "labels.npy", labels)
        plot_knee(counts, inertias, knee, chosen, work / "knee.png")
        shutil.rmtree(work / "chunks")
        run.log(f"[utt-targets] knee Q = {knee}, using Q = {chosen}; curve in {work / 'knee.png'}")
        info = {"num_clusters": int(chosen), "knee": knee, "counts": counts, "inertias": inertias}
    run.mark_done("utt-targets", info if run.ctx.is_main else {})


def _kmeans_cached(work: Path, x: np.ndarray, q: int, iterations: int, seed: int) -> tuple[np.ndarray, float]:
    path = work / f"kmeans_Q{q}.npz"
    if path.is_file():
        saved = load_npz(path, "centroids", "inertia")
        return saved["centroids"], float(saved["inertia"])
    centroids, inertia = fit_kmeans(x, q, iterations, seed)
    save_npz(path, centroids=centroids, inertia=np.float64(inertia))
    return centroids, inertia


def _array(path: Path, ndim: int, kinds: str, rows: int | None = None) -> np.ndarray:
    """A stage's array file, checked: ``ndim`` dimensions, a dtype kind in ``kinds``, ``rows`` rows if given."""
    array = load_npy(path)
    if array.ndim != ndim or array.dtype.kind not in kinds or rows is not None and len(array) != rows:
        expected = f"{ndim}-D {'integer' if kinds == 'iu' else 'float'} array" + (f" of {rows} rows" if rows else "")
        raise StageError(f"{path}: expected a {expected}, got {array.dtype} {array.shape}; rerun its stage")
    return array


def joint_model_config(config: Config, num_utterance_clusters: int) -> ModelConfig:
    """The model of the joint stage: the config's, with Q set to the number of utterance clusters found."""
    utterance = dataclasses.replace(config.model.utterance, num_targets=num_utterance_clusters)
    return dataclasses.replace(config.model, utterance=utterance)


def joint_stage(model: Learn2Diss, cfg: JointConfig, segment_frames: int) -> TrainingStage:
    """The joint stage of ``model`` (on its device): the objective with a fresh q_phi, Adam for g, h and q_phi.

    With ``feature_grad_mult`` (a parent's own run) the front end of f trains with g's optimiser.
    """
    club = cfg.club
    device = next(model.parameters()).device
    q = GaussianCLUBNetwork(model.config.utterance.embed_dim, model.config.parent.embed_dim, club.hidden_dim,
                            club.logvar_activation, club.standardize).to(device)
    q_opt = make_adam(list(q.parameters()), club.optimizer)
    front_end = model.train_front_end(cfg.feature_grad_mult) if cfg.feature_grad_mult else []  # a parent's own run
    return TrainingStage(
        name="joint", model=model, objective=JointObjective(model, cfg, segment_frames, q, q_opt),
        optimizers={"frame": (make_adam(model.frame_parameters() + front_end, cfg.frame_optimizer), cfg.frame_optimizer),
                    "utterance": (make_adam(model.utterance_parameters(), cfg.utterance_optimizer),
                                  cfg.utterance_optimizer)},
        steps=cfg.steps, grad_accum=cfg.grad_accum,
    )


def joint(run: Run) -> None:
    """Stage d: L_total = L_frame + L_utt + lambda L_MI (eq. 10), q_phi by its NLL (eq. 2)."""
    cfg, work = run.config.joint, run.dir("joint")
    num_q = int(run.finished("utt-targets")["num_clusters"])
    model_config = joint_model_config(run.config, num_q)
    torch.manual_seed(run.config.train.seed)
    model = Learn2Diss(model_config)
    state = current_names(load_checkpoint(run.checkpoint("utt-simclr"))["model"], model_config)
    if num_q != run.config.model.utterance.num_targets:  # W_h gets Q outputs: a fresh head
        state = {k: v for k, v in state.items() if not k.startswith("h.head.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("h.head.") for k in missing):
        raise StageError(f"the utt-simclr checkpoint does not fit the joint model (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    model.to(run.ctx.device)
    stage = joint_stage(model, cfg, run.segment_frames)
    frame_labels = FrameLabels(run.dir("frame-targets"))
    utt_labels = _array(run.dir("utt-targets") / "labels.npy", 1, "iu", len(run.manifest))
    batches = _training_batches(run, _usable(run, model.min_samples, two_segments=False), run.config.data.max_batch_seconds,
                                frame_labels, utt_labels)
    final = train(stage, batches, work, run.out / "tensorboard" / "joint", run.config.train, run.ctx, run.resume,
                  {"config": config_to_dict(run.config), "model_config": to_dict(model_config)})
    run.mark_done("joint", {"checkpoint": str(final), "num_utterance_clusters": num_q})
