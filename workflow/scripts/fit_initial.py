"""Rule fit_initial: θ(t0) of every IC of a split for one model."""

from dbdflow.stages import fit_initial, log_to

with log_to(snakemake.log[0]):
    i, w = snakemake.input, snakemake.wildcards
    fit_initial(i.config, i.moments, w.model, w.split, snakemake.output[0], list(i.sims) or None)
