"""Write a manifest into WebDataset tar shards, and stream training batches from them.

On a shared filesystem, millions of one-utterance files are the bottleneck; a few thousand tar
shards read sequentially are not. ``learn2diss data shard`` writes ``OUT/shard-NNNNNN.tar`` in the
WebDataset layout (one sample per utterance, key = manifest row):

- ``<row>.flac`` (or ``.wav``): the file's own bytes when it is 16 kHz mono, else FLAC (24-bit) of
  the audio resampled to 16 kHz, mono;
- ``<row>.frames.npy``: the frame targets of ``RUN/frame_targets`` (with ``--run``, once that stage is done);
- ``<row>.cls``: the utterance cluster of ``RUN/utt_targets`` (likewise).

``OUT/index.json`` (settings, fingerprints of the manifest and of the targets, shard names) and
``OUT/rows.npy`` (the manifest rows of every shard, in order) let the loader plan an epoch from
metadata alone. Utterances are shuffled across shards when they are written (a shuffle buffer
only mixes nearby utterances); each shard is written to a temporary name and renamed, so an
interrupted run continues with the shards it has not finished.

The training loader (:class:`ShardStream`, selected by ``data.shards`` in the config):

- splits shards across ranks x DataLoader workers: each epoch, the shards are shuffled and dealt to
  the ``world_size x num_workers`` streams, each to the stream with the least audio so far;
- passes each stream's utterances through a shuffle buffer of ``data.shuffle_buffer`` utterances;
- cuts the buffer's output into buckets of :data:`BUCKET` utterances and batches each bucket
  with the seconds budget of the file loader (length-sorted, ``longest x count <= budget``), the
  batches of a bucket in random order;
- gives every stream the same number of batches per epoch (the smallest; the few batches cut are
  counted in the log), so DDP ranks stay in step and the DataLoader's round-robin over its
  workers makes batch ``g`` of a rank come from worker ``g mod num_workers``.

Everything is a pure function of ``(seed, epoch)`` and the shard index: the shuffle buffer is
played on the metadata, so the loader knows each batch's utterances before reading any audio.
A run resumed at ``(epoch, batch index)`` skips the shards and samples before that point without
decoding them and yields exactly the batches an uninterrupted run would have (crops, segments
and masks keyed as in :mod:`learn2diss.data.batching`).

Example (on the files of `make demo`: the demo's manifest with the targets of its Learn2Diss preparation)::

    learn2diss data shard --data runs/demo/manifest --out runs/shards --run runs/demo/runs/l2d_shared \\
        --shard-utterances 100
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from learn2diss.data.audio import read_audio
from learn2diss.data.batching import Batch, LabelTable, UtteranceDataset, inference_batches
from learn2diss.data.manifest import Manifest, read_manifest
from learn2diss.errors import Learn2DissError
from learn2diss.io import (
    atomic_open,
    load_npy,
    npy_bytes,
    parse_npy,
    read_json,
    save_npy,
    write_json,
)
from learn2diss.rng import keyed_rng
from learn2diss.upstream.config import SAMPLE_RATE

__all__ = ["ShardError", "ShardIndex", "write_shards", "epoch_plan", "ShardStream", "shard_batches",
           "targets_fingerprint", "BUCKET"]

INDEX, ROWS = "index.json", "rows.npy"
SHARD_NAME = "shard-{:06d}.tar"
SHARD_PATTERN = re.compile(r"shard-\d{6,}\.tar")
KEY_PATTERN = re.compile(r"\d{9,}")  # a sample's key: its manifest row
BUCKET = 256  # utterances length-sorted together into seconds-budget batches
FORMAT_VERSION = 1


class ShardError(Learn2DissError, ValueError):
    """Shards that do not match the manifest, the targets or the run's layout; the message names the file."""


def targets_fingerprint(array: np.ndarray) -> str:
    """SHA-1 of an array's bytes: frame targets are named by their centroids, utterance targets by their labels."""
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest()


@dataclass(frozen=True)
class ShardIndex:
    """``index.json`` + ``rows.npy`` of a shard folder."""

    directory: Path
    names: list[str]
    offsets: np.ndarray  # (S + 1,) into rows
    rows: np.ndarray  # manifest rows, shard after shard
    manifest_fingerprint: str
    manifest_utterances: int
    frame_targets: str | None  # fingerprint of the frame targets stored, or None
    utt_targets: str | None

    @classmethod
    def load(cls, directory: str | Path) -> ShardIndex:
        directory = Path(directory)
        path = directory / INDEX
        if not path.is_file():
            raise ShardError(f"{path}: no shard index; write the shards with `learn2diss data shard` "
                             "(an interrupted run writes it last)")
        info = read_json(path, "shard index")
        if not isinstance(info, dict) or info.get("format") != FORMAT_VERSION:
            found = info.get("format") if isinstance(info, dict) else info
            raise ShardError(f"{path}: shard format {found!r}, this version reads {FORMAT_VERSION}")
        missing = [key for key in ("shards", "counts", "manifest_fingerprint", "manifest_utterances", "frame_targets",
                                   "utt_targets") if key not in info]
        if missing:
            raise ShardError(f"{path}: not a shard index (missing {', '.join(missing)})")
        names, counts = info["shards"], info["counts"]
        if not isinstance(names, list) or not isinstance(counts, list) or len(names) != len(counts) \
                or not all(isinstance(c, int) and c >= 0 for c in counts):
            raise ShardError(f"{path}: 'shards' and 'counts' must be lists of one name and one count per shard")
        outside = [name for name in names if not isinstance(name, str) or not SHARD_PATTERN.fullmatch(name)]
        if outside:  # a name like ../../x.tar would read files outside the shard folder
            raise ShardError(f"{path}: shard names must be shard-NNNNNN.tar files of this folder, got {outside[0]!r}")
        offsets = np.concatenate([[0], np.cumsum(np.asarray(counts, dtype=np.int64))])
        rows = load_npy(directory / ROWS)
        if rows.ndim != 1 or rows.dtype.kind not in "iu":
            raise ShardError(f"{directory / ROWS}: expected one integer row per utterance, got {rows.dtype} "
                             f"{rows.shape}")
        if len(rows) != offsets[-1]:
            raise ShardError(f"{directory / ROWS}: {len(rows)} rows, {path} counts {offsets[-1]}")
        return cls(directory, names, offsets, rows, info["manifest_fingerprint"],
                   int(info["manifest_utterances"]), info["frame_targets"], info["utt_targets"])

    def __len__(self) -> int:
        return len(self.names)

    def shard_rows(self, shard: int) -> np.ndarray:
        return self.rows[self.offsets[shard] : self.offsets[shard + 1]]

    def check_manifest(self, manifest: Manifest) -> None:
        if self.manifest_fingerprint != manifest.fingerprint():
            raise ShardError(f"{self.directory / INDEX}: the shards were written from another manifest "
                             f"({self.manifest_utterances} utterances) than {manifest.source}; "
                             "rewrite them with `learn2diss data shard`")


def _audio_sample(path: str) -> tuple[str, bytes]:
    """(extension, bytes): the file itself when it is 16 kHz mono, else FLAC of the 16 kHz mono audio."""
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise ShardError(f"{path}: unreadable audio ({err}); rebuild the manifest with `learn2diss data manifest`") from None
    suffix = Path(path).suffix.lower().lstrip(".")
    if info.samplerate == SAMPLE_RATE and info.channels == 1 and suffix in ("flac", "wav"):
        return suffix, Path(path).read_bytes()
    buffer = io.BytesIO()
    sf.write(buffer, read_audio(path), SAMPLE_RATE, format="FLAC", subtype="PCM_24")
    return "flac", buffer.getvalue()


def decode_audio(data: bytes, where: str) -> np.ndarray:
    """A stored utterance as float32 ``(samples,)``."""
    try:
        wav, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise ShardError(f"{where}: unreadable audio in the shard ({err})") from None
    if sr != SAMPLE_RATE or wav.shape[1] != 1:
        raise ShardError(f"{where}: {sr} Hz, {wav.shape[1]} channels in the shard; expected 16 kHz mono")
    return np.ascontiguousarray(wav[:, 0])


def write_shards(
    manifest: Manifest,
    out: Path,
    shard_utterances: int = 1000,
    frame_labels: LabelTable | None = None,
    frame_fingerprint: str | None = None,
    utt_labels: np.ndarray | None = None,
    utt_fingerprint: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> ShardIndex:
    """Write ``manifest`` (shuffled with ``seed``) into shards of ``shard_utterances`` utterances; resumable. A run
    that fails before its first shard removes the folder it created."""
    created = not out.exists()
    try:
        return _write_shards(manifest, out, shard_utterances, frame_labels, frame_fingerprint, utt_labels,
                             utt_fingerprint, seed, progress)
    except BaseException:
        if created and not any(out.glob("shard-*.tar")):  # nothing worth resuming: leave no empty folder behind
            shutil.rmtree(out, ignore_errors=True)
        raise


def _write_shards(manifest: Manifest, out: Path, shard_utterances: int, frame_labels: LabelTable | None,
                  frame_fingerprint: str | None, utt_labels: np.ndarray | None, utt_fingerprint: str | None,
                  seed: int, progress: bool) -> ShardIndex:
    import webdataset as wds
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    settings = {"format": FORMAT_VERSION, "manifest": manifest.source, "manifest_fingerprint": manifest.fingerprint(),
                "manifest_utterances": len(manifest), "shard_utterances": shard_utterances, "seed": seed,
                "frame_targets": frame_fingerprint if frame_labels is not None else None,
                "utt_targets": utt_fingerprint if utt_labels is not None else None}
    plan_path = out / ".plan.json"
    if plan_path.is_file() and read_json(plan_path, "shard plan") != settings:
        raise ShardError(f"{out}: holds shards written with other settings, manifest or targets ({plan_path}); "
                         "use another --out")
    write_json(plan_path, settings)
    order = keyed_rng(seed).permutation(len(manifest))
    chunks = [order[i : i + shard_utterances] for i in range(0, len(order), shard_utterances)]
    names = [SHARD_NAME.format(i) for i in range(len(chunks))]
    for name, rows in tqdm(list(zip(names, chunks, strict=True)), desc="shards", unit="shard", disable=not progress):
        if (out / name).is_file():
            continue
        with atomic_open(out / name, "wb") as handle, wds.TarWriter(handle) as writer:
            for row in rows:
                ext, data = _audio_sample(manifest.paths[row])
                sample = {"__key__": f"{row:09d}", ext: data}
                if frame_labels is not None:
                    sample["frames.npy"] = npy_bytes(frame_labels[row])
                if utt_labels is not None:
                    sample["cls"] = str(int(utt_labels[row])).encode()
                writer.write(sample)
    save_npy(out / ROWS, np.concatenate(chunks).astype(np.int64))
    index = {**settings, "shards": names, "counts": [len(c) for c in chunks]}
    write_json(out / INDEX, index)
    return ShardIndex.load(out)


@dataclass(frozen=True)
class EpochPlan:
    """One epoch: the shards each stream reads (in order) and the batches (manifest rows) it yields."""

    shards: list[list[int]]  # stream -> shard ids
    batches: list[list[list[int]]]  # stream -> its batches, already cut to the common count
    dropped_utterances: int  # usable utterances in the batches cut to equalise the streams


def _shuffle_buffer(rows: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """The order in which a shuffle buffer of ``size`` releases ``rows`` (streamed in this order)."""
    picks = rng.integers(0, size, len(rows))
    buffer: list[int] = []
    out: list[int] = []
    for row, pick in zip(rows.tolist(), picks.tolist(), strict=True):
        if len(buffer) < size:
            buffer.append(row)
        else:
            out.append(buffer[pick])
            buffer[pick] = row
    out += [buffer[i] for i in rng.permutation(len(buffer))]
    return np.asarray(out, dtype=np.int64)


def epoch_plan(index: ShardIndex, lengths: np.ndarray, usable: np.ndarray, epoch: int, seed: int, streams: int,
               shuffle_buffer: int, max_batch_samples: int) -> EpochPlan:
    """Deal the shards to ``streams`` streams and batch each stream's utterances (see the module docstring).

    Args:
        lengths: (N,) samples of every manifest row after cropping.
        usable: (N,) bool, rows that may be trained on.
    """
    if len(index) < streams:
        raise ShardError(f"{index.directory}: {len(index)} shards for {streams} streams (processes x data workers); "
                         "write smaller shards (learn2diss data shard --shard-utterances) or use fewer workers")
    rng = keyed_rng(seed, 2, epoch)
    load = np.zeros(streams, dtype=np.int64)
    shards: list[list[int]] = [[] for _ in range(streams)]
    for shard in rng.permutation(len(index)).tolist():
        stream = int(np.argmin(load))
        shards[stream].append(shard)
        load[stream] += int(lengths[index.shard_rows(shard)].sum())
    batches = []
    for stream, ids in enumerate(shards):
        rows = np.concatenate([index.shard_rows(s) for s in ids])
        rows = rows[usable[rows]]
        order = _shuffle_buffer(rows, shuffle_buffer, keyed_rng(seed, 3, epoch, stream))
        stream_batches: list[list[int]] = []
        for start in range(0, len(order), BUCKET):
            bucket = order[start : start + BUCKET]
            bucket = bucket[np.argsort(lengths[bucket], kind="stable")]
            cut = inference_batches(list(range(len(bucket))), lengths[bucket], max_batch_samples)
            permutation = keyed_rng(seed, 4, epoch, stream, start).permutation(len(cut))
            stream_batches += [[int(bucket[i]) for i in cut[p]] for p in permutation]
        batches.append(stream_batches)
    count = min(len(b) for b in batches)
    if count == 0:
        raise ShardError(f"{index.directory}: a stream gets no batch in epoch {epoch}; write smaller shards or use "
                         "fewer data workers")
    dropped = sum(len(batch) for b in batches for batch in b[count:])
    return EpochPlan(shards, [b[:count] for b in batches], dropped)


class ShardStream(torch.utils.data.IterableDataset):
    """This rank's endless stream of batches (lists of :meth:`UtteranceDataset.item` dicts) read from shards.

    Args:
        index: the shard folder. dataset: crops and targets (its paths name utterances in errors).
        indices: the usable manifest rows. max_batch_samples: the seconds budget in samples.
        seed, rank, world_size, num_workers: as the DataLoader and DDP run it (num_workers 0 counts as 1).
        shuffle_buffer: utterances in each stream's shuffle buffer.
        start: ``(epoch, batch index)``; the index must be a multiple of ``num_workers`` (see :func:`shard_batches`).
    """

    def __init__(self, index: ShardIndex, dataset: UtteranceDataset, indices: np.ndarray, max_batch_samples: int,
                 seed: int, rank: int, world_size: int, num_workers: int, shuffle_buffer: int,
                 start: tuple[int, int] = (0, 0)) -> None:
        super().__init__()
        self.index, self.dataset = index, dataset
        self.lengths = dataset.cropped_lengths()
        self.usable = np.zeros(len(self.lengths), dtype=bool)
        self.usable[np.asarray(indices, dtype=np.int64)] = True
        if int(self.lengths[self.usable].max()) > max_batch_samples:
            raise ShardError("an utterance is longer than the batch budget: lower data.max_utterance_seconds")
        self.max_batch_samples, self.seed, self.shuffle_buffer = max_batch_samples, seed, shuffle_buffer
        self.rank, self.world_size, self.workers = rank, world_size, max(num_workers, 1)
        if start[1] % self.workers:
            raise ShardError(f"start index {start[1]} is not a multiple of the {self.workers} data workers")
        self.start = start
        self.use_frames = index.frame_targets is not None and dataset.frame_labels is not None
        self.use_utt = index.utt_targets is not None and dataset.utt_labels is not None

    def plan(self, epoch: int) -> EpochPlan:
        return epoch_plan(self.index, self.lengths, self.usable, epoch, self.seed, self.world_size * self.workers,
                          self.shuffle_buffer, self.max_batch_samples)

    def __iter__(self) -> Iterator[list[dict]]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        if (info.num_workers if info is not None else 1) != self.workers:
            raise RuntimeError(f"ShardStream made for {self.workers} workers runs under "
                               f"{info.num_workers if info else 1}")
        stream = self.rank * self.workers + worker
        epoch, first = self.start[0], self.start[1] // self.workers
        while True:
            plan = self.plan(epoch)
            yield from self._epoch(epoch, plan.shards[stream], plan.batches[stream], first, worker)
            epoch, first = epoch + 1, 0

    def _epoch(self, epoch: int, shards: list[int], batches: list[list[int]], first: int,
               worker: int) -> Iterator[list[dict]]:
        import webdataset as wds

        batch_of = {row: j for j in range(first, len(batches)) for row in batches[j]}
        missing = {j: len(batches[j]) for j in range(first, len(batches))}
        held: dict[int, dict] = {}
        j = first
        for shard in shards:
            if j == len(batches):
                return
            if not any(int(r) in batch_of for r in self.index.shard_rows(shard)):
                continue  # nothing needed from here: not even opened
            url = str(self.index.directory / self.index.names[shard])
            for sample in _samples(wds, url):
                row = _row(sample, url)
                if row not in batch_of:
                    continue
                held[row] = sample
                missing[batch_of[row]] -= 1
                while j < len(batches) and missing[j] == 0:
                    yield [self._item(held.pop(r), r, epoch, j * self.workers + worker, url) for r in batches[j]]
                    j += 1
        if j < len(batches):
            raise ShardError(f"{self.index.directory}: epoch {epoch} batch {j} needs utterances its shards do not "
                             "hold; the shards are incomplete, rewrite them")

    def _item(self, sample: dict, row: int, epoch: int, batch: int, url: str) -> dict:
        where = f"{url}:{sample['__key__']}"
        audio = sample.get("flac", sample.get("wav"))
        if audio is None:
            raise ShardError(f"{where}: no .flac or .wav member")
        frames = _member(sample, "frames.npy", where, lambda data: parse_npy(data, f"{where}.frames.npy")) \
            if self.use_frames else None
        if frames is not None and (frames.ndim != 1 or frames.dtype.kind not in "iu"):
            raise ShardError(f"{where}.frames.npy: expected one integer label per frame, got {frames.dtype} "
                             f"{frames.shape}")
        utt = _member(sample, "cls", where, lambda data: int(data.decode("ascii"))) if self.use_utt else None
        return self.dataset.item((row, epoch, batch), decode_audio(audio, where), frames, utt)


def _samples(wds: Any, url: str) -> Iterator[dict]:
    """The samples of one tar shard; a damaged or truncated tar is a :class:`ShardError` naming it."""
    import tarfile

    try:
        yield from wds.tarfile_samples([{"url": url}])
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:
        raise ShardError(f"{url}: not a readable tar shard ({type(err).__name__}: {err}); rewrite the shards with "
                         "`learn2diss data shard`") from None


def _row(sample: dict, url: str) -> int:
    """The manifest row a sample's key names (``000000042``): anything else (a path, a name) is refused."""
    key = str(sample.get("__key__"))
    if not KEY_PATTERN.fullmatch(key):
        raise ShardError(f"{url}: member {key!r} is not a manifest row (9 digits); the shard was not written by "
                         "`learn2diss data shard`")
    return int(key)


def _member(sample: dict, name: str, where: str, parse: Callable[[bytes], Any]) -> Any:
    if name not in sample:
        raise ShardError(f"{where}: no .{name} member")
    try:
        return parse(sample[name])
    except (ValueError, UnicodeDecodeError) as err:
        raise ShardError(f"{where}.{name}: {err}") from None


def shard_batches(
    directory: str | Path, manifest: Manifest, dataset: UtteranceDataset, collate_fn: Callable[[list[dict]], Batch],
    indices: np.ndarray, max_batch_samples: int, seed: int, rank: int, world_size: int, num_workers: int,
    shuffle_buffer: int, pin_memory: bool,
) -> Callable[[tuple[int, int]], Iterator[Batch]]:
    """``(epoch, batch index) -> iterator of Batch`` from shards, for :func:`learn2diss.training.loop.train`.

    Targets stored in the shards are used when their fingerprints match the run's (``dataset``'s
    frame labels, read from ``centroids.npy`` beside them, and utterance labels), else it is an
    error; shards without targets get them from ``dataset`` (the run's label files).
    """
    index = ShardIndex.load(directory)
    index.check_manifest(manifest)
    frame_fingerprint = utt_fingerprint = None
    if dataset.frame_labels is not None and hasattr(dataset.frame_labels, "directory"):
        frame_fingerprint = targets_fingerprint(load_npy(Path(dataset.frame_labels.directory) / "centroids.npy"))
    if dataset.utt_labels is not None:
        utt_fingerprint = targets_fingerprint(np.asarray(dataset.utt_labels))
    for kind, stored, wanted in (("frame", index.frame_targets, frame_fingerprint),
                                 ("utterance", index.utt_targets, utt_fingerprint)):
        if stored is not None and wanted is not None and stored != wanted:
            raise ShardError(f"{index.directory / INDEX}: the {kind} targets in the shards are not this run's "
                             "(another k-means); rewrite them with `learn2diss data shard --run RUN`, or without --run")
    workers = max(num_workers, 1)

    def factory(position: tuple[int, int]) -> Iterator[Batch]:
        epoch, batch = position
        if rank == 0:
            plan = epoch_plan(index, dataset.cropped_lengths(), np.isin(np.arange(len(manifest)), indices), epoch, seed,
                              world_size * workers, shuffle_buffer, max_batch_samples)
            print(f"shards: {len(index)} in {index.directory} over {world_size} process(es) x {workers} data worker(s); "
                  f"epoch {epoch}: {len(plan.batches[0])} batches per worker, {plan.dropped_utterances} of "
                  f"{len(indices)} utterances cut to give every worker as many", flush=True)
        skip = batch % workers  # the DataLoader starts its round-robin at worker 0
        stream = ShardStream(index, dataset, indices, max_batch_samples, seed, rank, world_size, num_workers,
                             shuffle_buffer, (epoch, batch - skip))
        loader = torch.utils.data.DataLoader(stream, batch_size=None, collate_fn=collate_fn, num_workers=num_workers,
                                             pin_memory=pin_memory)
        iterator = iter(loader)
        for _ in range(skip):
            next(iterator)
        return iterator

    return factory


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="manifest TSV, or the folder written by `learn2diss data manifest`")
    parser.add_argument("--out", required=True, help="shard folder (created; an interrupted run continues)")
    parser.add_argument("--run", help="pretraining run folder: store its frame and utterance targets too, where done")
    parser.add_argument("--shard-utterances", type=int, default=1000,
                        help="utterances per shard (default 1000: ~0.5-1 GB of FLAC at LibriSpeech lengths)")
    parser.add_argument("--seed", type=int, default=0, help="order of the utterances across shards")


def run(args: argparse.Namespace) -> int:
    from learn2diss.pretrain.targets import FrameLabels

    if args.shard_utterances < 1:
        raise ShardError("--shard-utterances must be >= 1")
    manifest = read_manifest(args.data)
    frame_labels = utt_labels = frame_fp = utt_fp = None
    if args.run:
        run_dir = Path(args.run)
        if (run_dir / "frame_targets" / "done.json").is_file():
            frame_labels = FrameLabels(run_dir / "frame_targets")
            frame_fp = targets_fingerprint(load_npy(run_dir / "frame_targets" / "centroids.npy"))
            if len(frame_labels) != len(manifest):
                raise ShardError(f"{run_dir / 'frame_targets'}: labels of {len(frame_labels)} utterances, "
                                 f"{manifest.source} has {len(manifest)}")
        if (run_dir / "utt_targets" / "done.json").is_file():
            utt_labels = load_npy(run_dir / "utt_targets" / "labels.npy")
            utt_fp = targets_fingerprint(utt_labels)
        if frame_labels is None and utt_labels is None:
            print(f"note: {run_dir} has no finished frame_targets or utt_targets stage; writing audio only")
    index = write_shards(manifest, Path(args.out), args.shard_utterances, frame_labels, frame_fp, utt_labels, utt_fp,
                         args.seed)
    stored = [name for name, fp in (("frame targets", index.frame_targets), ("utterance targets", index.utt_targets))
              if fp]
    hours = manifest.samples.sum() / SAMPLE_RATE / 3600
    print(f"{args.out}: {len(index)} shards, {len(manifest)} utterances, {hours:.1f} h"
          + (f", with {' and '.join(stored)}" if stored else ""))
    return 0
