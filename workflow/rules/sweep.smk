# Parameter sweeps (config key `sweep`): a summary table and figure across the points' metrics.

if SWEEP is not None and all(evaluated(exp) for exp in EXPS):

    rule sweep_summary:
        input:
            [f"results/{exp}/eval/metrics.json" for exp in EXPS],
        output:
            table=report(
                f"{SWEEP_DIR}/summary.tsv", caption="../report/sweep.rst", category="Sweep"
            ),
            figure=report(
                f"{SWEEP_DIR}/summary.png", caption="../report/sweep.rst", category="Sweep"
            ),
        params:
            table=str(SWEEP),
            experiments=list(EXPS),
        log:
            f"{SWEEP_DIR}/sweep_summary.log",
        localrule: True
        conda:
            "../../envs/dbdflow.yaml"
        script:
            "../scripts/sweep_summary.py"
