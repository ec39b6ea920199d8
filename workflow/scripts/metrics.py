"""Rule metrics: one metrics.json from every model's and baseline's summary."""

from dbdflow.stages import combine_metrics, log_to

with log_to(snakemake.log[0]):
    combine_metrics(list(snakemake.input), snakemake.output[0])
