"""Rule report: figures and report.md of an experiment."""

from pathlib import Path

from dbdflow.stages import log_to, report

with log_to(snakemake.log[0]):
    i = snakemake.input
    report(
        i.config,
        i.metrics,
        list(i.tables),
        list(i.dynamics),
        Path(snakemake.output.markdown).parent,
        sims_file=i.sims[0] if i.sims else None,
    )
