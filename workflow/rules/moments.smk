# One MPI job per split: ranks split the batch files and reduce exact integer sums.


rule moments:
    input:
        config=f"{RESULTS}/config.yaml",
        sims=lambda wc: sims_files(wc.exp, wc.split),
    output:
        f"{RESULTS}/moments/{{split}}.h5",
    log:
        f"{RESULTS}/logs/moments/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/moments/{{split}}.tsv"
    resources:
        mpi=lambda wc: mpi_launcher(workflow.executor_plugin.name),
        tasks=1,
    conda:
        "../../envs/dbdflow.yaml"
    shell:
        "{resources.mpi} -n {resources.tasks} dbdflow moments --config {input.config}"
        " --split {wildcards.split} --out {output} --expect-ranks {resources.tasks}"
        " {input.sims} > {log} 2>&1"
