# One MPI job per split: ranks split the batch files and reduce exact integer sums. The command
# names the sims directory, not every file (thousands of paths exceed the kernel's argument limit);
# the stage expects exactly the batch files the config implies, the same list as the input here.


rule moments:
    input:
        config=lambda wc: sims_config(wc.exp),
        sims=lambda wc: sims_files(wc.exp, wc.split),
    output:
        f"{RESULTS}/moments/{{split}}.h5",
    log:
        f"{RESULTS}/logs/moments/{{split}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/moments/{{split}}.tsv"
    params:
        sims_dir=lambda wc: sims_dir(wc.exp, wc.split),
    resources:
        mpi=lambda wc: mpi_launcher(workflow.executor_plugin.name),
        tasks=1,
    conda:
        "../../envs/dbdflow.yaml"
    shell:
        "{resources.mpi} -n {resources.tasks} dbdflow moments --config {input.config}"
        " --split {wildcards.split} --out {output} --expect-ranks {resources.tasks}"
        " --sims-dir {params.sims_dir} > {log} 2>&1"
