"""Rule train: learn the dynamics of one model on the train split (Algorithm 1)."""

from dbdflow.stages import log_to, train

with log_to(snakemake.log[0]):
    i = snakemake.input
    train(
        i.config,
        i.moments,
        i.initial,
        snakemake.wildcards.model,
        snakemake.output[0],
        sims_files=list(i.sims) or None,
        resume="auto",  # continue a killed run from its checkpoint; ignore a stale one
    )
