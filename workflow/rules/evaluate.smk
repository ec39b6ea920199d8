# Evaluation on the held-out test split (every model and closure baseline), metrics and report.


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        table=f"{RESULTS}/eval/{{name}}.csv",
        summary=f"{RESULTS}/eval/{{name}}.json",
    log:
        f"{RESULTS}/logs/evaluate/{{name}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{name}}.tsv"
    conda:
        "../../envs/dbdflow.yaml"
    script:
        "../scripts/evaluate.py"


rule metrics:
    input:
        lambda wc: [f"results/{wc.exp}/eval/{name}.json" for name in eval_names(wc.exp)],
    output:
        report(f"{RESULTS}/eval/metrics.json", caption="../report/metrics.rst", category="Metrics"),
    log:
        f"{RESULTS}/logs/metrics.log",
    localrule: True
    conda:
        "../../envs/dbdflow.yaml"
    script:
        "../scripts/metrics.py"


rule report:
    input:
        config=f"{RESULTS}/config.yaml",
        metrics=f"{RESULTS}/eval/metrics.json",
        tables=lambda wc: [f"results/{wc.exp}/eval/{name}.csv" for name in eval_names(wc.exp)],
        dynamics=lambda wc: [f"results/{wc.exp}/models/{m}/dynamics.h5" for m in EXPS[wc.exp].models],
        sims=report_sims,
    output:
        markdown=f"{REPORT}/report.md",
        figures=[
            report(
                f"{REPORT}/{name}",
                caption=f"../report/{key.split('_')[0]}.rst",
                category="Figures",
            )
            for key, name in REPORT_FIGURES.items()
        ],
    log:
        f"{RESULTS}/logs/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report.tsv"
    conda:
        "../../envs/dbdflow.yaml"
    script:
        "../scripts/report.py"
