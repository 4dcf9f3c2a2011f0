"""SuggestTrials latency: morphnas's Bayesian policy vs Optuna's GPSampler, one CPU thread.

For each history size N: a synthetic history of N − K completed architectures (random morph
chains of the digits seed (1, 8, 8), 10 classes, scored by a smooth synthetic function) is asked
once untimed (caches warm, as in a long-running server), then K asks are timed, each after the
previous proposal was "trained" and added as a completed trial — what the server sees.
Optuna: a GPSampler study on 5 numeric parameters, N − K trials added with ``add_trials``,
then K timed ``ask()`` + ``tell()``.

    python bench/suggest.py            # writes bench/results/suggest.txt

``--objectives size_peak first_layer_width --seeds 0 1 2``: CPU time per proposal of 30-trial
bayesian searches on the synthetic objectives of ``tests/search/objectives.py`` (no training).

``--runs``: the suggest share of real searches instead. Default searches (bayesian, the
child recipe) of ``--trials`` trials train on digits and MNIST-1D in one process (an in-process
server and worker, one torch thread, 8 epochs a trial as the slow main-job test); the CPU time
spent inside ``SearchService.suggest`` (thread time of the worker's calls: storage, policy,
weight carrying) is compared with the process's CPU time for the whole search.

    python bench/suggest.py --runs [--trials 8] [--seeds 0]   # bench/results/suggest-share.txt
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from morphnas.core.graph import Graph  # noqa: E402
from morphnas.core.morphs import sample_morph  # noqa: E402
from morphnas.core.records import (  # noqa: E402
    Observation,
    Policy,
    Search,
    SearchConfig,
    SearchSnapshot,
    TrialState,
)
from morphnas.core.seeds import seed_graph  # noqa: E402
from morphnas.search import acquisition, policy, surrogate  # noqa: E402
from morphnas.search.cache import SearchCache  # noqa: E402
from morphnas.server.service import ServiceLimits  # noqa: E402

SIZES = {50: 20, 200: 20, 500: 12, 1000: 12}  # history size -> timed asks
OPTUNA_ASKS = {50: 10, 200: 8, 500: 5, 1000: 4}


#: The server's defaults: the budget each ask really gets.
SERVER = ServiceLimits()


def score(graph: Graph) -> float:
    """Smooth synthetic objective of log parameters, depth and skips."""
    params = math.log(graph.num_params)
    depth = len(graph.main_chain)
    skips = sum(layer.kind in ("add", "concat") for layer in graph.layers)
    return (
        0.9 - 0.03 * (params - math.log(2e5)) ** 2 + 0.004 * min(depth, 40) + 0.01 * min(skips, 4)
    )


def random_history(config: SearchConfig, n: int, rng_seed: int = 0) -> list[Graph]:
    """The seed, then 1-2 random morphs of a random earlier architecture (better half favoured)."""
    rng = np.random.default_rng(rng_seed)
    graphs = [seed_graph(config.input_shape, config.num_classes)]
    scores = [score(graphs[0])]
    hashes = {graphs[0].content_hash}
    while len(graphs) < n:
        order = np.argsort(scores)[::-1]
        parent = graphs[int(order[int(rng.integers(max(1, (len(order) + 1) // 2)))])]
        child = parent
        for _ in range(1 + int(rng.integers(2))):
            child = sample_morph(child, rng).apply(child)
        if child.content_hash not in hashes and child.num_params < 5_000_000:
            hashes.add(child.content_hash)
            graphs.append(child)
            scores.append(score(child))
    return graphs


#: Measured seconds given to every completed trial (``--trial-seconds``; None: not measured).
TRIAL_SECONDS: list[float | None] = [None]


def observation(graph: Graph, number: int) -> Observation:
    return Observation(
        f"t{number}", number, graph.to_json(), graph.content_hash, TrialState.COMPLETED,
        score(graph), None, seconds=TRIAL_SECONDS[0],
    )  # fmt: skip


def snapshot(config: SearchConfig, observations: list[Observation]) -> SearchSnapshot:
    search = Search("bench", config, 0.0, config.max_params, len(observations))
    return SearchSnapshot(search, tuple(observations))


class Timers:
    """Wall time spent in the surrogate (distances + GP) and in the tree search."""

    def __init__(self) -> None:
        self.model = 0.0
        self.tree = 0.0
        self.expansions: list[int] = []
        model_init = surrogate.Surrogate.__init__
        search = acquisition.tree_search

        def timed_init(obj, *args, **kwargs):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            model_init(obj, *args, **kwargs)
            self.model += time.perf_counter() - t

        def timed_search(*args, **kwargs):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            found = search(*args, **kwargs)
            self.tree += time.perf_counter() - t
            self.expansions.append(found.expansions if found else 0)
            return found

        surrogate.Surrogate.__init__ = timed_init  # type: ignore[method-assign]
        policy.tree_search = timed_search  # type: ignore[assignment]

    def reset(self) -> None:
        self.model = self.tree = 0.0
        self.expansions = []


def bench_morphnas(
    history: list[Graph],
    config: SearchConfig,
    timers: Timers,
    sizes: dict[int, int],
    cache: SearchCache,
    budget: float = SERVER.suggest_time_budget_s,
    expansions: int | None = SERVER.suggest_expansions,
) -> dict:
    """``cache``: shared by every ask, as a long-running server shares its one cache."""
    results = {}
    for size, asks in sizes.items():
        observations = [observation(g, i) for i, g in enumerate(history[: size - asks])]
        t = time.perf_counter()
        policy.propose(
            snapshot(config, observations),
            1,
            time_budget_s=budget,
            max_expansions=expansions,
            cache=cache,
        )  # warm, untimed
        warm = time.perf_counter() - t
        timers.reset()
        latencies, cpu = [], []
        for _ in range(asks):
            snap = snapshot(config, observations)
            t, c = time.perf_counter(), time.process_time()
            [proposal] = policy.propose(
                snap, 1, time_budget_s=budget, max_expansions=expansions, cache=cache
            )
            latencies.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            observations.append(observation(proposal.graph, len(observations)))
        lat = np.array(latencies)
        results[size] = {
            "p50": float(np.percentile(lat, 50)),
            "p95": float(np.percentile(lat, 95)),
            "cpu50": float(np.percentile(cpu, 50)),
            "cpu95": float(np.percentile(cpu, 95)),
            "model": timers.model / asks,
            "tree": timers.tree / asks,
            "expansions": float(np.mean(timers.expansions)),
            "warmup": warm,
            "best": max(o.score or 0 for o in observations),
        }
        r = results[size]
        print(
            f"morphnas budget {budget} s n={size}: "
            f"p50 {r['p50'] * 1e3:.0f} ms  p95 {r['p95'] * 1e3:.0f} ms  "
            f"cpu p50 {r['cpu50'] * 1e3:.0f} ms  "
            f"(model {r['model'] * 1e3:.0f} ms, tree {r['tree'] * 1e3:.0f} ms, "
            f"{r['expansions']:.0f} expansions; warm-up {warm:.1f} s)",
            flush=True,
        )
    return results


def bench_optuna() -> dict:
    import optuna
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {f"x{i}": optuna.distributions.FloatDistribution(0.0, 1.0) for i in range(5)}

    def objective(params: dict[str, float]) -> float:
        x = np.array([params[f"x{i}"] for i in range(5)])
        return float(np.sum(np.sin(3 * x)) - np.sum((x - 0.6) ** 2))

    rng = np.random.default_rng(0)
    results = {}
    for size, asks in OPTUNA_ASKS.items():
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.GPSampler(seed=0))
        trials = []
        for _ in range(size - asks):
            params = {name: float(rng.random()) for name in space}
            trials.append(
                optuna.trial.create_trial(
                    params=params, distributions=space, value=objective(params)
                )
            )
        study.add_trials(trials)
        latencies, cpu = [], []
        for _ in range(asks):
            t, c = time.perf_counter(), time.process_time()
            trial = study.ask(space)
            latencies.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            study.tell(trial, objective(trial.params))
        lat = np.array(latencies)
        results[size] = {
            "p50": float(np.percentile(lat, 50)),
            "p95": float(np.percentile(lat, 95)),
            "cpu50": float(np.percentile(cpu, 50)),
            "cpu95": float(np.percentile(cpu, 95)),
        }
        print(
            f"optuna   n={size}: p50 {results[size]['p50'] * 1e3:.0f} ms  "
            f"p95 {results[size]['p95'] * 1e3:.0f} ms  "
            f"cpu p50 {results[size]['cpu50'] * 1e3:.0f} ms",
            flush=True,
        )
    return results


def _ms(seconds: float | None, width: int = 6) -> str:
    return f"{seconds * 1e3:{width}.0f}" if seconds is not None else " " * (width - 3) + "n/a"


def table(ours: dict, theirs: dict, quick: dict, elapsed: float, load: str) -> str:
    lines = [
        "SuggestTrials latency, propose(snapshot, 1), default time budget 1 s, one CPU thread",
        "(history: random morph chains of the digits seed (1,8,8)/10 classes, synthetic scores;",
        " each timed ask follows one new completed trial, caches warm as in a long-running server)",
        "",
        "wall = elapsed time; cpu = process CPU time (what the ask costs without waiting for a",
        f"core). Machine: {os.cpu_count()} cores shared with other jobs; 1-min load average {load}.",
        "",
        "             morphnas (ms)                      |  optuna GPSampler (ms)     | ratio p50",
        f"{'n':>5} | {'wall50':>6} {'wall95':>6} {'cpu50':>6} {'cpu95':>6} | {'model':>5} "
        f"{'tree':>5} {'exp':>3} | {'wall50':>6} {'wall95':>6} {'cpu50':>6} {'cpu95':>6} | "
        f"{'wall':>5} {'cpu':>5}",
        "-" * 104,
    ]
    for size in ours:
        o, t = ours[size], theirs.get(size, {})
        ratio_wall = f"{o['p50'] / t['p50']:5.2f}" if t else "  n/a"
        ratio_cpu = f"{o['cpu50'] / t['cpu50']:5.2f}" if t else "  n/a"
        lines.append(
            f"{size:>5} | {_ms(o['p50'])} {_ms(o['p95'])} {_ms(o['cpu50'])} {_ms(o['cpu95'])} | "
            f"{_ms(o['model'], 5)} {_ms(o['tree'], 5)} {o['expansions']:3.0f} | "
            f"{_ms(t.get('p50'))} {_ms(t.get('p95'))} {_ms(t.get('cpu50'))} "
            f"{_ms(t.get('cpu95'))} | {ratio_wall} {ratio_cpu}"
        )
    lines += ["", "Same asks, 1 s time budget, expansions left to the policy (from trial seconds):"]
    for size, q in quick.items():
        lines.append(
            f"{size:>5} | {_ms(q['p50'])} {_ms(q['p95'])} {_ms(q['cpu50'])} {_ms(q['cpu95'])} | "
            f"{_ms(q['model'], 5)} {_ms(q['tree'], 5)} {q['expansions']:3.0f}"
        )
    lines += [
        "",
        "model = distances + hyperparameters + eigen-basis + posterior; tree = tree search",
        "(means per ask); exp = mean tree-search expansions (annealing allows at most 88).",
        "ratio = morphnas / optuna (optuna: GPSampler on 5 numeric parameters, study.ask() after",
        "add_trials, one new told trial per ask).",
        f"targets: p50 <= 100 ms at 200, p95 <= 1 s at 1000.  total bench time {elapsed:.0f} s",
    ]
    return "\n".join(lines)


def objective_asks(names: list[str], seeds: list[int], trials: int = 30) -> str:
    """CPU time of each proposal of bayesian searches on synthetic objectives (no training)."""
    from tests.search import objectives

    cpu: list[float] = []
    expansions: list[int] = []
    propose_fn, search_fn = objectives.propose, policy.tree_search

    def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
        began = time.process_time()
        try:
            return propose_fn(*args, **kwargs)
        finally:
            cpu.append(time.process_time() - began)

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        found = search_fn(*args, **kwargs)
        expansions.append(found.expansions if found else 0)
        return found

    objectives.propose = timed  # type: ignore[assignment]
    policy.tree_search = counted  # type: ignore[assignment]
    try:
        for name in names:
            for seed in seeds:
                objectives.run(objectives.OBJECTIVES[name], Policy.BAYESIAN, seed, trials)
    finally:
        objectives.propose = propose_fn  # type: ignore[assignment]
        policy.tree_search = search_fn  # type: ignore[assignment]
    ms = 1e3 * np.array(cpu)
    return (
        f"{len(cpu)} proposals of {trials}-trial bayesian searches on {', '.join(names)} "
        f"(seeds {seeds}): CPU mean {ms.mean():.0f} ms, p50 {np.median(ms):.0f} ms, "
        f"p95 {np.percentile(ms, 95):.0f} ms, max {ms.max():.0f} ms; "
        f"{np.mean(expansions):.1f} expansions on average"
    )


def suggest_share(
    dataset: str, seed: int, trials: int, expansions: int | None = None
) -> dict[str, float]:
    """One default search on ``dataset``; CPU seconds in suggest and in the whole search.

    ``expansions``: a fixed tree-search effort (None: the default, from measured trial seconds).
    """
    import tempfile
    import threading

    import torch

    from morphnas.client import Client
    from morphnas.server.app import ServerOptions, build_server
    from morphnas.server.service import SearchService
    from morphnas.server.training import TrainingService
    from morphnas.server.worker import Worker

    torch.set_num_threads(1)
    spent: list[float] = []
    done: list[int] = []  # expansions of each tree search
    original, search_fn = SearchService.suggest, policy.tree_search

    def timed(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        began = time.thread_time()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent.append(time.thread_time() - began)

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        found = search_fn(*args, **kwargs)
        done.append(found.expansions if found else 0)
        return found

    SearchService.suggest = timed  # type: ignore[method-assign]
    policy.tree_search = counted  # type: ignore[assignment]
    shapes = {"digits": (1, 8, 8), "mnist1d": (1, 40)}
    try:
        with tempfile.TemporaryDirectory(prefix="morphnas-suggest-") as folder:
            options = ServerOptions(
                db_url=f"sqlite:///{folder}/s.db",
                port=0,
                sweep_seconds=0.2,
                limits=ServiceLimits(suggest_expansions=expansions),
            )
            server = build_server(options)
            worker = Worker(
                TrainingService(server.service), name="bench", poll_seconds=0.05, device="cpu"
            )
            thread = threading.Thread(target=worker.run_forever, daemon=True)
            began = time.process_time()
            thread.start()
            try:
                with Client(server.address, timeout=60) as client:
                    search = client.create_search(
                        name=dataset, input_shape=shapes[dataset], num_classes=10, seed=seed
                    )
                    search.train(dataset, trials, epochs=8, max_seconds=600, device="cpu")
                    events = list(search.watch(timeout=3600))
                total = time.process_time() - began
            finally:
                worker.stop()
                thread.join(60)
                server.stop(0)
    finally:
        SearchService.suggest = original  # type: ignore[method-assign]
        policy.tree_search = search_fn  # type: ignore[assignment]
    finished = [e.payload for e in events if e.kind == "trial_finished"]
    trial_seconds = [float(p.get("seconds", 0.0)) for p in finished]
    return {
        "trials": len(finished),
        "beat": sum(bool(p.get("beat_parent")) for p in finished),
        "best": float(max(finished, key=lambda p: (p["score"] or 0.0, -p["number"]))["number"])
        if finished
        else -1.0,
        "trial_s": float(np.mean(trial_seconds)) if trial_seconds else 0.0,
        "cpu": total,
        "suggest": float(sum(spent)),
        "suggest_max": max(spent, default=0.0),
        "asks": len(spent),
        "expansions": float(np.mean(done)) if done else 0.0,
        "share": float(sum(spent)) / total if total > 0 else 0.0,
    }


def runs_table(
    trials: int, seeds: list[int], datasets: list[str], expansions: int | None = None
) -> str:
    effort = f"{expansions} expansions a proposal" if expansions else "the default effort"
    lines = [
        f"Suggest share of default searches ({trials} trials, 8 epochs a trial, one torch thread,",
        "in-process server and worker; CPU = process time of the whole search, suggest = thread",
        f"time inside SearchService.suggest). Machine: {os.cpu_count()} cores shared with other",
        f"jobs; 1-min load average {os.getloadavg()[0]:.1f} at the start; {effort}.",
        "best = number of the best trial (0: the seed); beat = children that beat their parent.",
        "",
        f"{'dataset':8} {'seed':>4} {'trials':>6} {'best':>4} {'beat':>4} {'trial s':>7} {'CPU s':>7} "
        f"{'suggest s':>9} {'max ask s':>9} {'exp/ask':>7} {'share':>6}",
    ]
    for dataset in datasets:
        for seed in seeds:
            r = suggest_share(dataset, seed, trials, expansions)
            lines.append(
                f"{dataset:8} {seed:>4} {r['trials']:>6.0f} {r['best']:>4.0f} {r['beat']:>4.0f} "
                f"{r['trial_s']:>7.1f} "
                f"{r['cpu']:>7.1f} {r['suggest']:>9.3f} {r['suggest_max']:>9.3f} "
                f"{r['expansions']:>7.1f} {100 * r['share']:>5.2f}%"
            )
            print(lines[-1], flush=True)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", action="store_true", help="suggest share of real searches")
    parser.add_argument(
        "--objectives", nargs="*", help="CPU per proposal on these synthetic objectives"
    )
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist1d"])
    parser.add_argument(
        "--expansions", type=int, default=None, help="with --runs: a fixed tree-search effort"
    )
    parser.add_argument("--no-optuna", action="store_true")
    parser.add_argument("--sizes", default="", help="comma-separated subset, e.g. 50,200")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "suggest.txt"))
    parser.add_argument(
        "--trial-seconds",
        type=float,
        default=None,
        help="measured seconds of every completed trial (the tree search's effort scales with it)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.objectives:
        print(objective_asks(args.objectives, args.seeds or [0, 1, 2]))
        return
    if args.runs:
        text = runs_table(args.trials, args.seeds, args.datasets, args.expansions)
        print(text)
        out = (
            Path(args.out).with_name("suggest-share.txt")
            if args.out == parser.get_default("out")
            else Path(args.out)
        )
        out.write_text(text + "\n")
        return
    TRIAL_SECONDS[0] = args.trial_seconds
    if args.sizes:
        keep = {int(x) for x in args.sizes.split(",")}
        for table_ in (SIZES, OPTUNA_ASKS):
            for size in list(table_):
                if size not in keep:
                    del table_[size]
            added = {size: 10 for size in keep - set(table_)}
            merged = sorted({**table_, **added}.items())
            table_.clear()
            table_.update(merged)
    start = time.perf_counter()
    config = replace(
        SearchConfig(name="bench", input_shape=(1, 8, 8), num_classes=10), max_params=5_000_000
    )
    loads = [os.getloadavg()[0]]
    history = random_history(config, max(SIZES))
    print(f"history ready ({time.perf_counter() - start:.0f} s)", flush=True)
    timers = Timers()
    cache = SearchCache()
    ours = bench_morphnas(history, config, timers, SIZES, cache)
    loads.append(os.getloadavg()[0])
    quick = bench_morphnas(
        history, config, timers, {s: 10 for s in SIZES if s in (200, 1000)}, cache, 1.0, None
    )
    distances = cache.distances
    print(f"distance pairs computed: {distances.layers.computed + distances.skips.computed}")
    rates = ", ".join(f"{k} {v.hit_rate:.2f}" for k, v in cache.stats().items())
    print(f"cache hit rates: {rates}")
    loads.append(os.getloadavg()[0])
    theirs = {} if args.no_optuna else bench_optuna()
    loads.append(os.getloadavg()[0])
    load = f"{min(loads):.1f}-{max(loads):.1f} during the run"
    text = table(ours, theirs, quick, time.perf_counter() - start, load)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
