# One job per (split, IC, batch); the `sims` group lets a cluster profile bundle many into one job.


rule simulate:
    input:
        config=lambda wc: sims_config(wc.exp),
    output:
        f"{RESULTS}/sims/{{split}}/ic{{ic}}_b{{batch}}.h5",
    log:
        f"{RESULTS}/logs/simulate/{{split}}/ic{{ic}}_b{{batch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/simulate/{{split}}/ic{{ic}}_b{{batch}}.tsv"
    group:
        "sims"
    conda:
        "../../envs/dbdflow.yaml"
    script:
        "../scripts/simulate.py"
