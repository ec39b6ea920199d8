# Helpers shared by all rules: the typed experiment, wildcard constraints and target lists.
from dbdflow.config import from_dict
from dbdflow.profiles import mpi_launcher

EXP = from_dict(config, source="config")
RESULTS = f"results/{EXP.name}"


wildcard_constraints:
    split="train|test",
    ic=r"\d+",
    batch=r"\d+",


def sims_files(split):
    """Every simulation batch file of a split."""
    return [
        f"{RESULTS}/sims/{split}/ic{ic}_b{batch}.h5"
        for ic in range(EXP.split(split).n_ics)
        for batch in range(EXP.n_batches(split))
    ]


def all_targets():
    return [f"{RESULTS}/moments/{split}.h5" for split in EXP.splits]


rule resolved_config:
    output:
        f"{RESULTS}/config.yaml",
    params:
        config=EXP.raw,
    log:
        f"{RESULTS}/logs/config.log",
    conda:
        "../../envs/dbdflow.yaml"
    script:
        "../scripts/write_config.py"
