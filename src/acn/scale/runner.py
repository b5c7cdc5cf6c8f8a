"""Run a batch job's items locally (in-process or a process pool) or as Ray tasks.

Both runners call the same plain per-item functions (:mod:`acn.scale.work`) through
:func:`acn.scale.work.attempt`, retry :class:`~acn.scale.work.TransientError` up to
``max_retries`` times, report progress on stderr, and return a :class:`BatchSummary`;
:func:`finish` then writes the job's combined outputs (the dataset index after extraction,
the results JSON after localization) and a summary file with every failure.
"""

from __future__ import annotations

import math
import multiprocessing
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from acn.errors import AcnError
from acn.fileio import ensure_dir, read_json, write_json, write_text
from acn.scale.manifest import Item
from acn.scale.work import WORK, ItemResult, JobSpec, TransientError, attempt, detections_path


@dataclass
class BatchSummary:
    """What a batch job did. ``failed`` and ``warnings`` hold ``(video id, one-line message)``."""

    kind: str
    out: Path
    backend: str
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    retries: int = 0
    seconds: float = 0.0
    video_seconds: float = 0.0
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def add(self, r: ItemResult) -> None:
        self.sources[r.id] = r.source
        if r.status == "done":
            self.done.append(r.id)
            self.video_seconds += r.video_seconds
        elif r.status == "skipped":
            self.skipped.append(r.id)
        else:
            self.failed.append((r.id, r.message))
        self.warnings += [(r.id, w) for w in r.warnings]

    def to_json(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        d["failed"] = [{"video": v, "source": self.sources.get(v, ""), "error": m}
                       for v, m in self.failed]
        d["warnings"] = [{"video": v, "warning": m} for v, m in self.warnings]
        del d["sources"]
        return d


# -- progress -----------------------------------------------------------------------------------
class _Progress:
    """A tqdm bar on a terminal; elsewhere (cluster logs) a plain line every 5% or 60 s."""

    def __init__(self, total: int, desc: str, enabled: bool, log: Callable[[str], None] | None):
        from tqdm.auto import tqdm

        self.total, self.desc, self.n = total, desc, 0
        self.lines = enabled and not sys.stderr.isatty()
        self.bar = tqdm(total=total, desc=desc, unit="video", disable=not enabled or self.lines,
                        dynamic_ncols=True, file=sys.stderr)
        self.say = log or (lambda m: self.bar.write(m, file=sys.stderr))
        self.t0 = self.last = time.perf_counter()

    def update(self, s: BatchSummary, r: ItemResult) -> None:
        if r.status == "failed":
            self.say(f"acn batch {s.kind}: failed: {r.message}")
        self.n += 1
        self.bar.update(1)
        self.bar.set_postfix(done=len(s.done), skipped=len(s.skipped), failed=len(s.failed),
                             refresh=False)
        now = time.perf_counter()
        if self.lines and (self.n == self.total or now - self.last >= 60
                           or self.n % max(1, self.total // 20) == 0):
            self.last = now
            print(f"acn batch {self.desc}: {self.n}/{self.total} ({len(s.done)} done, "
                  f"{len(s.skipped)} skipped, {len(s.failed)} failed) after {now - self.t0:.0f} s",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()


def _failed(item: Item, e: BaseException) -> ItemResult:
    return ItemResult(item.id, item.source, "failed", str(e).strip().splitlines()[0]
                      if str(e).strip() else type(e).__name__)


# -- local -------------------------------------------------------------------------------------
def run_local(items: Sequence[Item], spec: JobSpec, *, workers: int = 1, max_retries: int = 2,
              progress: bool = True, log: Callable[[str], None] | None = None,
              work: Callable | None = None) -> BatchSummary:
    """Run every item here: in this process (``workers == 1``) or a pool of ``workers``
    processes (spawned, each loading models once)."""
    work = work or WORK[spec.kind]
    summary = BatchSummary(spec.kind, Path(spec.out), "local" if workers <= 1 else
                           f"local x{workers}")
    bar = _Progress(len(items), f"{spec.kind}", progress, log)
    t0 = time.perf_counter()
    try:
        if workers <= 1:
            for it in items:
                for k in range(max_retries + 1):
                    try:
                        r = attempt(work, it, spec)
                        break
                    except TransientError as e:
                        if k == max_retries:
                            r = _failed(it, e)
                        else:
                            summary.retries += 1
                            bar.say(f"acn batch {spec.kind}: retrying ({k + 1}/{max_retries}): {e}")
                summary.add(r)
                bar.update(summary, r)
        else:
            ctx = multiprocessing.get_context("spawn")  # fork after torch threads can hang

            def new_pool() -> ProcessPoolExecutor:
                return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)

            pool = new_pool()
            try:
                tries: dict[Future, tuple[Item, int]] = {}
                for it in items:
                    tries[pool.submit(attempt, work, it, spec)] = (it, 0)
                while tries:
                    finished, _ = wait(list(tries), return_when=FIRST_COMPLETED)
                    for f in finished:
                        it, k = tries.pop(f)
                        try:
                            r = f.result()
                        except (TransientError, BrokenProcessPool) as e:
                            if isinstance(e, BrokenProcessPool):  # a worker died (OOM kill?)
                                e = TransientError(f"{it.source}: a worker process died")
                                if pool._broken:  # type: ignore[attr-defined]
                                    pool.shutdown(wait=False, cancel_futures=True)
                                    pool = new_pool()
                            if k < max_retries:
                                summary.retries += 1
                                bar.say(f"acn batch {spec.kind}: retrying ({k + 1}/"
                                        f"{max_retries}): {e}")
                                tries[pool.submit(attempt, work, it, spec)] = (it, k + 1)
                                continue
                            r = _failed(it, e)
                        summary.add(r)
                        bar.update(summary, r)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - t0
    return summary


# -- Ray ---------------------------------------------------------------------------------------
def _import_ray():
    try:
        import ray
    except ImportError:
        raise AcnError("--ray needs Ray: pip install 'acn[ray]' (or run with --local)") from None
    return ray


def run_ray(items: Sequence[Item], spec: JobSpec, *, address: str | None = None,
            num_cpus: float = 1, num_gpus: float = 0, max_retries: int = 2,
            max_in_flight: int | None = None, progress: bool = True,
            log: Callable[[str], None] | None = None, work: Callable | None = None,
            init_kwargs: dict | None = None) -> BatchSummary:
    """Run every item as a Ray task (``num_cpus``/``num_gpus`` each), retrying
    :class:`TransientError` (and lost workers) up to ``max_retries`` times.

    Connects to ``address`` (``auto``, ``ray://head:10001``, ``head:6379``), or to a running
    Ray when None (``RAY_ADDRESS``, else a new local one), unless Ray is initialised already.
    At most ``max_in_flight`` tasks are queued at once (default: twice the cluster's slots), so
    a million-line manifest does not flood the scheduler.
    """
    ray = _import_ray()
    if not ray.is_initialized():
        ray.init(address=address, **(init_kwargs or {}))
    work = work or WORK[spec.kind]
    task = ray.remote(attempt).options(
        num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries,
        retry_exceptions=[TransientError], name=f"acn-{spec.kind}")
    if max_in_flight is None:
        res = ray.cluster_resources()
        slots = res.get("CPU", 1) / num_cpus if num_cpus else 64
        if num_gpus:
            slots = min(slots, res.get("GPU", 0) / num_gpus)
        max_in_flight = max(4, int(2 * math.ceil(slots)))
    summary = BatchSummary(spec.kind, Path(spec.out), f"ray {address}" if address else "ray")
    bar = _Progress(len(items), f"{spec.kind} (ray)", progress, log)
    t0 = time.perf_counter()
    pending: dict = {}
    todo = list(items)[::-1]
    spec_ref, work_ref = ray.put(spec), ray.put(work)
    try:
        while todo or pending:
            while todo and len(pending) < max_in_flight:
                it = todo.pop()
                pending[task.remote(work_ref, it, spec_ref)] = it
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                it = pending.pop(ref)
                try:
                    r = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - retries exhausted, or the task died
                    cause = getattr(e, "cause", None) or e
                    r = _failed(it, cause)
                summary.add(r)
                bar.update(summary, r)
    finally:
        bar.close()
        for ref in pending:  # interrupted: leave no orphan work behind
            ray.cancel(ref)
        summary.seconds = time.perf_counter() - t0
    return summary


# -- finishing ---------------------------------------------------------------------------------
def _tag(shard: tuple[int, int] | None) -> str:
    return f".shard-{shard[0]}-of-{shard[1]}" if shard else ""


def finish(summary: BatchSummary, spec: JobSpec, items: Sequence[Item],
           shard: tuple[int, int] | None = None, stream: str = "fused") -> dict[str, Path]:
    """Write the job's combined outputs and ``batch-{kind}[.shard-i-of-n].json``; a
    ``failed-{kind}...txt`` lists the failed entries (a manifest to retry)."""
    out = ensure_dir(Path(spec.out))
    tag = _tag(shard)
    written: dict[str, Path] = {}
    if spec.kind == "extract":
        from acn.extract import write_index

        written["index"] = write_index(out)
    else:
        written["results"] = write_results(out / f"results{tag}.json", out,
                                           [it.id for it in items], stream)
    info = summary.to_json()
    info.update({"shard": list(shard) if shard else None, "items": len(items)})
    written["summary"] = out / f"batch-{spec.kind}{tag}.json"
    write_json(written["summary"], info)
    failed = out / f"failed-{spec.kind}{tag}.txt"
    if summary.failed:
        write_text(failed, "".join(f"{summary.sources.get(v, v)}\n" for v, _ in summary.failed))
        written["failed"] = failed
    elif failed.is_file():
        failed.unlink()
    return written


def write_results(path: Path, out: Path, ids: Sequence[str], stream: str) -> Path:
    """Merge the per-video detection files of ``ids`` into one ActivityNet results JSON
    (videos not localized, e.g. failed ones, are left out)."""
    from acn.evaluate import save_results

    dets = {}
    for vid in ids:
        p = detections_path(out, vid)
        if not p.is_file():
            continue
        rec = read_json(p, "detections file")
        rows = rec.get("streams", {}).get(stream)
        if rows is None:
            raise AcnError(f"{p}: no {stream!r} detections")
        dets[vid] = [(float(r["segment"][0]), float(r["segment"][1]), str(r["label"]),
                      float(r["score"])) for r in rows]
    save_results(path, dets, external_data={"used": False, "details": f"acn {stream} stream"})
    return path
