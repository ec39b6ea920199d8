"""Rule resolved_config: write the validated config (defaults filled in) as the stages' input."""

from dbdflow.stages import log_to, write_config

with log_to(snakemake.log[0]):
    write_config(snakemake.params.config, snakemake.output[0])
