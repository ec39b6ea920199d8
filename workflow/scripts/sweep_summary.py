"""Rule sweep_summary: one row per sweep point with its test metrics, and a figure."""

from dbdflow.stages import log_to, sweep_summary

with log_to(snakemake.log[0]):
    p, o = snakemake.params, snakemake.output
    sweep_summary(p.table, p.experiments, list(snakemake.input), o.table, o.figure)
