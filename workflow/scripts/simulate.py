"""Rule simulate: one batch of lattice simulations of one IC."""

from dbdflow.stages import log_to, simulate

with log_to(snakemake.log[0]):
    w = snakemake.wildcards
    simulate(snakemake.input.config, w.split, int(w.ic), int(w.batch), snakemake.output[0])
