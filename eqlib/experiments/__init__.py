"""One module per experiment, imported lazily by name.

Convention: ``eqlib/experiments/<name>.py`` defines two frozen dataclass presets and registers a
run function on import::

    from eqlib.runner import Run, experiment

    @dataclass(frozen=True)
    class Config:
        seed: int = 0
        n_members: int = 8

    @experiment("<name>", quick=Config(), full=Config(n_members=1000))
    def run(run: Run, cfg: Config) -> dict:
        data = run.step("data", lambda: {...})          # resumable, cached as steps/data.npz
        ...
        return {"arrays": {...}, "summary": {...}}      # → results.npz + results.json

Run with ``python -m eqlib run <name> --preset quick`` or ``eqlib.runner.run_experiment(name)``;
chapters load the newest result with ``eqlib.runner.latest_results(name, preset)``.
"""
