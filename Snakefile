# dbdflow workflow: learning dynamic Boltzmann distributions from lattice simulations.
#
# Path grammar (DESIGN.md §1), under results/{exp}/, {exp} being the config's `experiment`, or
# `experiment/column~value/...` for each point of a parameter sweep (config key `sweep`):
#   config.yaml                          the validated config with defaults filled in
#   config/simulation.yaml               its view for simulate and moments (no models, training)
#   config/model_{model}.yaml            its view for one model's fit_initial, train, evaluate
#   sims/{split}/ic{ic}_b{batch}.h5      one batch of simulations of one IC   (rule simulate)
#   moments/{split}.h5                   exact per-IC moment sums, MPI job    (rule moments)
#   models/{model}/initial_{split}.h5    θ(t0) of every IC of a split         (rule fit_initial)
#   models/{model}/dynamics.h5           learned F_k coefficients, θ(t)       (rule train)
#   eval/{name}.csv, eval/{name}.json    test-split comparison of one model or baseline
#                                                                             (rule evaluate)
#   eval/metrics.json                    RMSE by order of every model and baseline (rule metrics)
#   report/report.md, report/*.png       figures and the metrics table        (rule report)
#   (sweeps) results/<experiment>/sweep/summary.tsv|png   metrics across the points (rule sweep_summary)
# {split} is train or test; {ic} and {batch} are integers;
# {model} is a key of the config's `models`; {name} a model or a closure baseline (mean_field,
# pair). After a run, `snakemake --report report.html` collects figures, tables and dynamics.
#
# Run: snakemake --cores 2                  (default config/config.yaml)
#      snakemake --cores 2 --configfile config/paper/annihilation_1d.yaml
#      snakemake --cores 2 --config sweep=config/sweeps/annihilation_rate.tsv   (sweep the default)
#      snakemake --profile slurm            (cluster; see README "Running on a cluster")

from snakemake.utils import min_version

from dbdflow.config import from_dict

min_version("8.10")


# The embedded default is used only when no --configfile is given: Snakemake would otherwise merge
# a user's config into it key by key (e.g. keep the default's initial.params beside their counts).
# `--config key=value` alone (e.g. sweep=...) still applies on top of the default.
if "experiment" not in config:

    configfile: f"{workflow.basedir}/config/config.yaml"


# Validation against workflow/schemas/config.schema.yaml (defaults filled in), then the physics
# checks (reactions, lattice, models); a bad config stops here, before any job, with one line per
# bad key naming the config file and the key. (Snakemake's own `validate` is not used: it crashes
# on some wrongly typed keys and prints the whole schema instead of the key.)
BASE = from_dict(config, source=" + ".join(map(str, workflow.configfiles)) or "config")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/moments.smk"
include: "workflow/rules/learn.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/sweep.smk"


rule all:
    input:
        all_targets(),
    default_target: True
