"""Rule evaluate: one model's or closure baseline's predictions of the test split, compared."""

from dbdflow.stages import evaluate, log_to

with log_to(snakemake.log[0]):
    i, o = snakemake.input, snakemake.output
    evaluate(
        i.config,
        i.moments,
        snakemake.wildcards.name,
        o.table,
        o.summary,
        initial_path=i.get("initial"),
        dynamics_path=i.get("dynamics"),
    )
